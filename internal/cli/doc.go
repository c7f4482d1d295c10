// Package cli holds the command-line plumbing that iotnode and iotcloud
// share: parsing flags that may stand anywhere among the positional
// arguments. Each command keeps its own command table, help texts and exit
// codes; only the parts that must behave the same in both live here.
package cli
