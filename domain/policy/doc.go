// Package policy is the device-policy engine (protocol.md §5): a policy's
// pipelines, per attribute and for whole messages ("*"), run on the values a
// virtual device offers (VirtualDevice.Offer) and decide what is sent, when,
// and which alerts and actions they raise: filterCondition, sampleQuality,
// eliminateDuplicates, detectDuplicates, mean / min / max /
// standardDeviation windows, computedMetric, alertCondition,
// actionCondition, and the message-level batchByTime, batchBySize and
// batchByCost.
//
// The package is pure: time comes in as arguments (Offer, Tick), randomness
// through Options, and nothing does I/O. Formulas ($(attr) > 50 && ...) are
// compiled once by CompileFormula and evaluated against the device's values.
//
// Imports: the standard library and domain/model only.
package policy
