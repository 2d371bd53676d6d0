// Package archtest holds no code: its test checks that dependencies between
// Floodgate's packages point the way docs/ARCHITECTURE.md says.
package archtest
