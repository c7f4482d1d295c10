package model

// Type is the type of an attribute, action argument or format field.
type Type string

// The value types of protocol.md §4.
const (
	TypeInteger  Type = "INTEGER"
	TypeNumber   Type = "NUMBER"
	TypeString   Type = "STRING"
	TypeBoolean  Type = "BOOLEAN"
	TypeDateTime Type = "DATETIME"
	TypeURI      Type = "URI"
)

// FormatType says whether a format describes custom DATA or an ALERT.
type FormatType string

// The format types.
const (
	FormatData  FormatType = "DATA"
	FormatAlert FormatType = "ALERT"
)

// Range is an inclusive numeric range, written "min,max" on the wire. Only
// INTEGER and NUMBER elements have one; Min and Max are finite, Min <= Max.
type Range struct {
	Min, Max float64
}

// DeviceModel is a decoded, validated device model. Build one with Parse
// (or fill the fields and call Validate, which also builds the lookup indexes);
// do not modify it after that: it is shared between goroutines read-only.
// The lookups (Attribute, Action, Format) also work, by scanning, on a model
// that was never validated.
type DeviceModel struct {
	URN         string
	Name        string
	Description string
	System      bool
	Draft       bool
	Attributes  []Attribute
	Actions     []Action
	Formats     []Format

	// Raw is the JSON the model was parsed from (nil when built by hand);
	// model stores write it back byte for byte.
	Raw []byte

	attrIndex   map[string]int // name and alias -> index into Attributes
	actionIndex map[string]int // name and alias -> index into Actions
	formatIndex map[string]int // format URN -> index into Formats
}

// Attribute is one attribute of a device model.
type Attribute struct {
	Name        string
	Description string
	Alias       string
	Type        Type
	Range       *Range // nil when unbounded
	Writable    bool
	// Default is the defaultValue; its Valid() is false when the model has none.
	Default Value
}

// Action is one action of a device model. A legacy action (argType/range)
// is decoded into a single argument named "value" with Legacy set, so that
// both forms are handled alike.
type Action struct {
	Name        string
	Description string
	Alias       string
	Arguments   []Argument
	Legacy      bool
}

// Argument is one argument of an action.
type Argument struct {
	Name        string
	Description string
	Type        Type
	Range       *Range
	Default     Value
}

// Format is a custom DATA or ALERT format of a device model.
type Format struct {
	URN         string
	Name        string
	Description string
	Type        FormatType
	DeviceModel string
	Fields      []FormatField
}

// FormatField is one field of a format.
type FormatField struct {
	Name     string
	Type     Type
	Optional bool
}
