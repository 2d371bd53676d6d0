package config

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// envPrefix namespaces the environment variables so that a node can run in
// an environment shared with other software.
const envPrefix = "FLOODGATE_"

// configOption is the option naming the YAML file. It is special: it is
// read before the file, so the file itself cannot set it.
const configOption = "config"

// kind is how an option's text is parsed and printed. It is derived from
// the field's type so that adding a field needs nothing but its tags.
type kind int

const (
	kindString kind = iota
	kindInt
	kindFloat
	kindBool
	kindDuration
	kindList
)

// placeholder is what Usage shows after the flag name.
func (k kind) placeholder() string {
	switch k {
	case kindInt:
		return "INT"
	case kindFloat:
		return "NUMBER"
	case kindDuration:
		return "DURATION"
	case kindList:
		return "LIST"
	case kindBool:
		return "" // a bare boolean flag means true
	}
	return "STRING"
}

// option is one field of a configuration struct, as described by its tags.
type option struct {
	name  string // flag name and YAML key
	env   string // environment variable
	usage string
	index int // field index in the struct
	kind  kind
}

// optionsOf lists the options of struct type t in field order. A field
// without a flag tag, with a duplicate name or of an unsupported type is a
// programming error caught by the package's tests, so it panics rather than
// burdening every caller with an error that cannot happen in a release.
func optionsOf(t reflect.Type) []option {
	opts := make([]option, 0, t.NumField())
	seen := make(map[string]bool, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		name := f.Tag.Get("flag")
		if name == "" {
			panic(fmt.Sprintf("config: field %s.%s has no flag tag", t.Name(), f.Name))
		}
		if seen[name] {
			panic(fmt.Sprintf("config: flag %q is used by two fields of %s", name, t.Name()))
		}
		seen[name] = true
		k, ok := kindOf(f.Type)
		if !ok {
			panic(fmt.Sprintf("config: field %s.%s has unsupported type %s", t.Name(), f.Name, f.Type))
		}
		opts = append(opts, option{name: name, env: envName(name), usage: f.Tag.Get("usage"), index: i, kind: k})
	}
	return opts
}

// envName is the environment variable for the flag name: FLOODGATE_ and
// the name upper-cased, with '-' (not allowed in shell variable names)
// turned into '_'.
func envName(flag string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

func kindOf(t reflect.Type) (kind, bool) {
	// Duration is an int64 underneath; it must be recognised before Int64.
	if t == reflect.TypeFor[time.Duration]() {
		return kindDuration, true
	}
	switch t.Kind() {
	case reflect.String:
		return kindString, true
	case reflect.Int, reflect.Int64:
		return kindInt, true
	case reflect.Float64:
		return kindFloat, true
	case reflect.Bool:
		return kindBool, true
	case reflect.Slice:
		if t.Elem().Kind() == reflect.String {
			return kindList, true
		}
	}
	return 0, false
}

// setText parses s, as given in a flag, an environment variable or a YAML
// scalar, into v. The error says what was wrong with the value; the caller
// adds which option and where it came from.
func setText(v reflect.Value, k kind, s string) error {
	// Surrounding blanks are never meaningful in a number, and easily
	// slip into environment files; strings are kept verbatim.
	t := strings.TrimSpace(s)
	switch k {
	case kindString:
		v.SetString(s)
	case kindList:
		setList(v, splitList(s))
	case kindBool:
		b, err := strconv.ParseBool(t)
		if err != nil {
			return fmt.Errorf("invalid value %q: want true or false", s)
		}
		v.SetBool(b)
	case kindInt:
		n, err := strconv.ParseInt(t, 10, v.Type().Bits())
		if err != nil {
			return numError(s, err, "a whole number")
		}
		v.SetInt(n)
	case kindFloat:
		f, err := strconv.ParseFloat(t, 64)
		if err != nil {
			return numError(s, err, "a number")
		}
		v.SetFloat(f)
	case kindDuration:
		d, err := time.ParseDuration(t)
		if err != nil {
			return fmt.Errorf("invalid value %q: want a duration with a unit, such as 500ms, 25s, 5m or 24h", s)
		}
		v.SetInt(int64(d))
	}
	return nil
}

// numError rewords strconv's errors, which name Go functions, for the
// person editing a configuration.
func numError(s string, err error, want string) error {
	if errors.Is(err, strconv.ErrRange) {
		return fmt.Errorf("value %q is out of range", s)
	}
	return fmt.Errorf("invalid value %q: want %s", s, want)
}

// splitList splits a comma-separated list, dropping blanks around items and
// empty items, so that "a, b," and "" mean what a person would expect.
func splitList(s string) []string {
	var items []string
	for item := range strings.SplitSeq(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			items = append(items, item)
		}
	}
	return items
}

func setList(v reflect.Value, items []string) {
	if len(items) == 0 {
		// nil rather than empty, so an explicitly emptied list compares
		// equal to one never set.
		v.SetZero()
		return
	}
	v.Set(reflect.ValueOf(items).Convert(v.Type()))
}

// formatText formats v the way it would be written as a flag value, so
// that what Usage prints as a default can be pasted back.
func formatText(v reflect.Value, k kind) string {
	switch k {
	case kindList:
		items := make([]string, v.Len())
		for i := range items {
			items[i] = v.Index(i).String()
		}
		return strings.Join(items, ",")
	case kindBool:
		return strconv.FormatBool(v.Bool())
	case kindInt:
		return strconv.FormatInt(v.Int(), 10)
	case kindFloat:
		return strconv.FormatFloat(v.Float(), 'g', -1, 64)
	case kindDuration:
		return formatDuration(time.Duration(v.Int()))
	}
	return v.String()
}

// formatDuration is Duration.String without the zero minutes and seconds
// it appends to whole hours and minutes: 24h rather than 24h0m0s.
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}
