package policy

import "time"

// batchStage is one function of the "*" pipeline. Its stages form a chain:
// each holds the Data that reach it and, when its condition is met, passes
// everything it holds to the next one; what leaves the last goes out.
// Oracle applies only the first function of "*" (MessagingPolicyImpl.js
// _applyDevicePolicies2); a chain is what a pipeline of several means.
//
//   - batchByTime releases its batch delayLimit after the batch began (the
//     first Data it took in), so that no Data waits longer than delayLimit.
//     Oracle fires on a fixed period from the policy's assignment, which
//     bounds the wait the same way but wakes the device for empty batches.
//   - batchBySize releases when it holds batchSize Data.
//   - batchByCost holds everything while the device's network (Options.
//     NetworkCost) costs more than networkCost, in the order ETHERNET <
//     CELLULAR < SATELLITE, and passes everything otherwise. The device's
//     cost is fixed for the engine's life, so a held batch leaves with
//     Flush, or with an alert (below).
//
// Alerts are never held: they go out in Outcome.Alerts at once. As in
// Oracle (VirtualDevice.js _queueMessage, "alertOverridesPolicy"), an alert
// of severity alertSeverity (default CRITICAL) or above releases every
// stage's batch.
type batchStage struct {
	fn       string
	delay    time.Duration // batchByTime
	size     int           // batchBySize
	hold     bool          // batchByCost: the device's network costs too much
	severity int           // the alertSeverity rank that releases the batch
	held     []Data
	since    time.Time // when the batch began
}

// take adds in to the batch and returns the batch if it is to leave now.
func (b *batchStage) take(now time.Time, in []Data, force bool) []Data {
	if len(in) > 0 {
		if len(b.held) == 0 {
			b.since = now
		}
		b.held = append(b.held, in...)
	}
	if len(b.held) == 0 {
		return nil
	}
	release := force
	switch b.fn {
	case fnBatchByTime:
		release = release || !now.Before(b.since.Add(b.delay))
	case fnBatchBySize:
		release = release || len(b.held) >= b.size
	case fnBatchByCost:
		release = release || !b.hold
	}
	if !release {
		return nil
	}
	out := b.held
	b.held = nil
	return out
}

// deadline returns when a batchByTime batch falls due.
func (b *batchStage) deadline() (time.Time, bool) {
	if b.fn != fnBatchByTime || len(b.held) == 0 {
		return time.Time{}, false
	}
	return b.since.Add(b.delay), true
}
