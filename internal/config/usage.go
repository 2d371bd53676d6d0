package config

import (
	"fmt"
	"io"
	"reflect"
	"strings"
)

// Usage writes the help of command (e.g. "floodgate server") to w: every
// option in Config's field order, with its environment variable, its
// default from Default and its description. It is generated from the
// struct, so it cannot fall behind the options Load accepts.
func Usage(w io.Writer, command string) {
	usage(w, command, reflect.ValueOf(Default()))
}

// RouterUsage is Usage for `floodgate router`.
func RouterUsage(w io.Writer, command string) {
	usage(w, command, reflect.ValueOf(DefaultRouter()))
}

func usage(w io.Writer, command string, def reflect.Value) {
	var b strings.Builder
	fmt.Fprintf(&b, "Usage: %s [flags]\n\n", command)
	b.WriteString(`Every option can be given as a flag, as the environment variable shown, or as
a key of the YAML file named by --config (e.g. "ping-interval: 25s"). A flag
overrides the environment, which overrides the file. Lists are comma-separated
(or a YAML list in the file); durations need a unit: 500ms, 25s, 5m, 24h.

Options:
`)
	writeOptions(&b, def)
	_, _ = io.WriteString(w, b.String()) // help on a broken stdout has nowhere to report to
}

// writeOptions lists the options of the struct def, with def's field values
// as the defaults.
func writeOptions(b *strings.Builder, def reflect.Value) {
	for _, o := range optionsOf(def.Type()) {
		b.WriteString("  --" + o.name)
		if p := o.kind.placeholder(); p != "" {
			b.WriteString(" " + p)
		}
		b.WriteString("  $" + o.env)
		if d := formatText(def.Field(o.index), o.kind); d != "" {
			if o.kind == kindString || o.kind == kindList {
				// Quoted so that a default of ":7070" or "./data" reads
				// as one value, as the flag package prints strings.
				d = fmt.Sprintf("%q", d)
			}
			b.WriteString("  (default " + d + ")")
		}
		b.WriteString("\n")
		if o.usage != "" {
			b.WriteString("        " + o.usage + "\n")
		}
	}
}
