package message

import (
	"fmt"
	"strconv"
)

// name returns the wire name of p, or "" for a value outside the defined range.
func (p Priority) name() string {
	switch p {
	case PriorityLowest:
		return "LOWEST"
	case PriorityLow:
		return "LOW"
	case PriorityMedium:
		return "MEDIUM"
	case PriorityHigh:
		return "HIGH"
	case PriorityHighest:
		return "HIGHEST"
	}
	return ""
}

// Valid reports whether p is one of the five defined priorities.
func (p Priority) Valid() bool { return p >= PriorityLowest && p <= PriorityHighest }

// String returns the wire name of p ("LOWEST" ... "HIGHEST"), or "Priority(n)"
// for a value outside the defined range.
func (p Priority) String() string {
	if p.Valid() {
		return p.name()
	}
	return "Priority(" + strconv.Itoa(int(p)) + ")"
}

// ParsePriority returns the priority whose wire name is s. Names are matched
// exactly (upper case), as Oracle's clients do.
func ParsePriority(s string) (Priority, error) {
	for p := PriorityLowest; p <= PriorityHighest; p++ {
		if s == p.name() {
			return p, nil
		}
	}
	return 0, fmt.Errorf("unknown priority %q", s)
}

// MarshalText implements encoding.TextMarshaler with the wire name. It fails for
// a value outside the defined range.
func (p Priority) MarshalText() ([]byte, error) {
	if !p.Valid() {
		return nil, fmt.Errorf("marshal priority: invalid value %d, expected %d..%d", p, PriorityLowest, PriorityHighest)
	}
	return []byte(p.name()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler with [ParsePriority].
func (p *Priority) UnmarshalText(text []byte) error {
	v, err := ParsePriority(string(text))
	if err != nil {
		return err
	}
	*p = v
	return nil
}

// name returns the wire name of r, or "" for a value outside the defined range.
func (r Reliability) name() string {
	switch r {
	case BestEffort:
		return "BEST_EFFORT"
	case GuaranteedDelivery:
		return "GUARANTEED_DELIVERY"
	case NoGuarantee:
		return "NO_GUARANTEE"
	}
	return ""
}

// Valid reports whether r is one of the three defined reliabilities.
func (r Reliability) Valid() bool { return r >= BestEffort && r <= NoGuarantee }

// String returns the wire name of r ("BEST_EFFORT", "GUARANTEED_DELIVERY" or
// "NO_GUARANTEE"), or "Reliability(n)" for a value outside the defined range.
func (r Reliability) String() string {
	if r.Valid() {
		return r.name()
	}
	return "Reliability(" + strconv.Itoa(int(r)) + ")"
}

// ParseReliability returns the reliability whose wire name is s, matched exactly.
func ParseReliability(s string) (Reliability, error) {
	for r := BestEffort; r <= NoGuarantee; r++ {
		if s == r.name() {
			return r, nil
		}
	}
	return 0, fmt.Errorf("unknown reliability %q", s)
}

// MarshalText implements encoding.TextMarshaler with the wire name. It fails for
// a value outside the defined range.
func (r Reliability) MarshalText() ([]byte, error) {
	if !r.Valid() {
		return nil, fmt.Errorf("marshal reliability: invalid value %d, expected %d..%d", r, BestEffort, NoGuarantee)
	}
	return []byte(r.name()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler with [ParseReliability].
func (r *Reliability) UnmarshalText(text []byte) error {
	v, err := ParseReliability(string(text))
	if err != nil {
		return err
	}
	*r = v
	return nil
}

// Valid reports whether t is one of the five message types of protocol.md §3.
func (t Type) Valid() bool {
	switch t {
	case TypeData, TypeAlert, TypeRequest, TypeResponse, TypeResourcesReport:
		return true
	}
	return false
}

// Valid reports whether s is one of the four alert severities. The empty
// severity is not valid: builders must replace it with SeveritySignificant.
func (s Severity) Valid() bool {
	switch s {
	case SeverityLow, SeverityNormal, SeveritySignificant, SeverityCritical:
		return true
	}
	return false
}

// Valid reports whether t is one of the three report types.
func (t ReportType) Valid() bool {
	switch t {
	case ReportUpdate, ReportDelete, ReportReconciliation:
		return true
	}
	return false
}
