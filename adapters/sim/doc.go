// Package sim is the simulator driver: a sensor and actuator that need no
// hardware, so that iotnode runs (and its demo and tests run) on any machine.
// It implements ports.Sensor and ports.Actuator, the same seam that the
// periph.io drivers and the vendor plugins sit behind.
//
// # Sensors
//
// Each named signal follows one waveform between Min and Max:
//
//   - sine: a sine wave of the given Period around the middle of the range,
//     optionally with uniform Noise;
//   - random_walk: starts at Start (default: the middle) and moves by at most
//     Step per read, staying within the range;
//   - steps: the Values in turn, each held for Every.
//
// The waveforms are deterministic: the same Seed, clock readings and sequence
// of calls give the same values. Every signal draws from its own random
// source (seeded from Seed and the signal's name), so adding a signal does
// not change the values of another. Time comes from an injected ports.Clock.
//
// # Actuators
//
// Each named output keeps a state that Read reports as a reading of the same
// name, so that an attribute bound to it follows what the cloud set (a light
// switch's "power" reports the value written to its output). Actuate logs the
// change. The state of an output is the value of the single argument it was
// given (a writable attribute's "value", a one-argument action), or, for an
// action with no or several arguments, how many times it was invoked.
//
// # Failures
//
// FailEvery makes every Nth read fail, to exercise the node's health
// tracking and backoff without hardware that breaks on demand.
//
// Imports: the standard library, domain/ and ports. Never another adapter.
package sim
