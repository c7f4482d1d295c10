//go:build noplugin

package main

// preparePlugin of a node built without vendor plugins (go build -tags
// noplugin, or TAGS=noplugin scripts/build.sh: go-plugin brings gRPC, about
// 7 MB of the binary): a plugin device is a problem that says so.
func (deps driverDeps) preparePlugin(key, device string, settings map[string]any) (prepared, problems) {
	var ps problems
	ps.add(key, "this iotnode was built without vendor plugins (build tag noplugin); use a build without that tag")
	return prepared{}, ps
}
