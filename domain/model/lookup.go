package model

// Attribute returns the attribute with the given name or alias. A name
// match wins over an alias match (they can only meet in a model that failed
// Validate). The result points into m.Attributes: do not modify it.
//
// On a validated model this is a map lookup; on a model built by hand and
// not validated it scans. It never writes to m, so it is safe for
// concurrent use.
func (m *DeviceModel) Attribute(nameOrAlias string) (*Attribute, bool) {
	if m == nil || nameOrAlias == "" {
		return nil, false
	}
	if i, ok := m.attrIndex[nameOrAlias]; ok && i < len(m.Attributes) {
		if a := &m.Attributes[i]; a.Name == nameOrAlias || a.Alias == nameOrAlias {
			return a, true
		}
	}
	for i := range m.Attributes {
		if m.Attributes[i].Name == nameOrAlias {
			return &m.Attributes[i], true
		}
	}
	for i := range m.Attributes {
		if m.Attributes[i].Alias == nameOrAlias {
			return &m.Attributes[i], true
		}
	}
	return nil, false
}

// Action returns the action with the given name or alias, like Attribute.
func (m *DeviceModel) Action(nameOrAlias string) (*Action, bool) {
	if m == nil || nameOrAlias == "" {
		return nil, false
	}
	if i, ok := m.actionIndex[nameOrAlias]; ok && i < len(m.Actions) {
		if a := &m.Actions[i]; a.Name == nameOrAlias || a.Alias == nameOrAlias {
			return a, true
		}
	}
	for i := range m.Actions {
		if m.Actions[i].Name == nameOrAlias {
			return &m.Actions[i], true
		}
	}
	for i := range m.Actions {
		if m.Actions[i].Alias == nameOrAlias {
			return &m.Actions[i], true
		}
	}
	return nil, false
}

// Format returns the format with the given URN, like Attribute (formats have
// no alias).
func (m *DeviceModel) Format(urn string) (*Format, bool) {
	if m == nil || urn == "" {
		return nil, false
	}
	if i, ok := m.formatIndex[urn]; ok && i < len(m.Formats) && m.Formats[i].URN == urn {
		return &m.Formats[i], true
	}
	for i := range m.Formats {
		if m.Formats[i].URN == urn {
			return &m.Formats[i], true
		}
	}
	return nil, false
}
