package model

import "strings"

// SystemURNPrefix starts the URN of every system capability model
// (protocol.md §2b, §8).
const SystemURNPrefix = "urn:oracle:iot:dcd:capability:"

// The system capability device models (protocol.md §2b, §8). A directly
// connected device declares CapDirectActivation and CapDevicePolicy when it
// activates; a gateway also declares CapIndirectActivation.
const (
	CapDirectActivation   = SystemURNPrefix + "direct_activation"
	CapIndirectActivation = SystemURNPrefix + "indirect_activation"
	CapDevicePolicy       = SystemURNPrefix + "device_policy"
	CapMessageDispatcher  = SystemURNPrefix + "message_dispatcher"
	CapDiagnostics        = SystemURNPrefix + "diagnostics"
	CapLogging            = SystemURNPrefix + "logging"
	CapPowerManagement    = SystemURNPrefix + "power_management"
	CapSoftwareManagement = SystemURNPrefix + "software_management"
)

// System formats (protocol.md §8).
const (
	// FormatTestMessage is the DATA format of the messages a connectivity
	// test sends (fields current, count, payload).
	FormatTestMessage = CapDiagnostics + ":test_message"
	// FormatOverflowAlert is the ALERT format raised when the message
	// dispatcher's queue overflows (fields description, maxNumMessages).
	FormatOverflowAlert = CapMessageDispatcher + ":overflow"
)

// AttributesFormat returns the format URN of the DATA messages that carry
// attribute values of the device model urn: urn + ":attributes"
// (protocol.md §3c).
func AttributesFormat(urn string) string { return urn + ":attributes" }

// IsSystemURN reports whether urn names a system capability model or one of
// its formats: it starts with SystemURNPrefix and has something after it.
// System models are built into the library, never fetched from the cloud.
func IsSystemURN(urn string) bool {
	return len(urn) > len(SystemURNPrefix) && strings.HasPrefix(urn, SystemURNPrefix)
}
