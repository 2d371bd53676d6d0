package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"

	"gopkg.in/yaml.v3"
)

// ErrHelp is returned by Load when the arguments ask for help (-h, -help,
// --help): the caller should print Usage and exit successfully. It wraps
// flag.ErrHelp.
var ErrHelp = fmt.Errorf("config: %w", flag.ErrHelp)

// Load builds the configuration from, in increasing order of precedence:
// Default; the YAML file named by --config in args or FLOODGATE_CONFIG in
// environ; the FLOODGATE_* variables in environ; the flags in args. Each
// option is taken from the highest layer that sets it, so a flag overrides
// only its own option. An environment variable that is present but empty
// counts as set, so it can clear a value from the file.
//
// args are the arguments after the command name; environ is in the form of
// os.Environ, passed in so that Load reads no process state. Errors name
// the option and where its value came from; all problems found are
// reported together, and the returned Config is then the zero value. Load
// does not call Validate, so that a caller can adjust the result first.
func Load(args, environ []string) (Config, error) {
	cfg := Default()
	if err := load(reflect.ValueOf(&cfg).Elem(), args, environ); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// load fills the struct dst, already holding its defaults, from the three
// layers. It works on any struct of supported fields so that the tests can
// cover every kind, including kinds Config does not use today.
func load(dst reflect.Value, args, environ []string) error {
	opts := optionsOf(dst.Type())
	flags, err := parseFlags(opts, args)
	if err != nil {
		return err
	}
	env := envMap(environ)

	var errs []error
	if path, from := configPath(dst, opts, flags, env); path != "" {
		errs = append(errs, applyFile(dst, opts, path, from)...)
	}
	for _, o := range opts {
		if s, ok := env[o.env]; ok {
			if err := setText(dst.Field(o.index), o.kind, s); err != nil {
				errs = append(errs, fmt.Errorf("environment variable %s: %w", o.env, err))
			}
		}
	}
	for _, o := range opts {
		if vals, ok := flags[o.name]; ok {
			if err := setFlag(dst.Field(o.index), o.kind, vals); err != nil {
				errs = append(errs, fmt.Errorf("flag --%s: %w", o.name, err))
			}
		}
	}
	return errors.Join(errs...)
}

// parseFlags parses args with the flag package but only records the raw
// values, by flag name, in the order given. Converting them is left to the
// caller so that flags are applied after the file and the environment,
// whatever order Parse visits them in, and so that bad values get the same
// wording from every source.
func parseFlags(opts []option, args []string) (map[string][]string, error) {
	fs := flag.NewFlagSet("", flag.ContinueOnError)
	// The caller prints Usage; the flag package's own output would
	// duplicate the error and print a second, different usage.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	got := make(map[string][]string)
	for _, o := range opts {
		fs.Var(&recorder{name: o.name, isBool: o.kind == kindBool, got: got}, o.name, o.usage)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, ErrHelp
		}
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q: only flags are accepted", fs.Arg(0))
	}
	return got, nil
}

// recorder is a flag.Value that appends each value given for its flag to
// got.
type recorder struct {
	name   string
	isBool bool
	got    map[string][]string
}

func (r *recorder) Set(s string) error {
	r.got[r.name] = append(r.got[r.name], s)
	return nil
}

// String is required by flag.Value; the flag package only uses it for
// PrintDefaults, which Load never calls.
func (r *recorder) String() string { return "" }

// IsBoolFlag lets a boolean flag be given without a value, as the flag
// package allows for its own bool flags.
func (r *recorder) IsBoolFlag() bool { return r.isBool }

// setFlag applies the values given for one flag. A list flag given more
// than once collects all of them, the usual meaning of a repeated flag;
// any other flag takes its last value, as with the flag package.
func setFlag(v reflect.Value, k kind, vals []string) error {
	if k != kindList {
		return setText(v, k, vals[len(vals)-1])
	}
	var items []string
	for _, s := range vals {
		items = append(items, splitList(s)...)
	}
	setList(v, items)
	return nil
}

// envMap indexes environ by variable name. The first of duplicate entries
// wins, as with os.Getenv, so the node sees what the rest of the process
// sees.
func envMap(environ []string) map[string]string {
	env := make(map[string]string)
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(k, envPrefix) {
			continue
		}
		if _, dup := env[k]; !dup {
			env[k] = v
		}
	}
	return env
}

// configPath returns the YAML file to read, if any, and where its name came
// from, for error messages. The flag and the environment variable take the
// usual precedence; an empty --config disables a file named in the
// environment.
func configPath(dst reflect.Value, opts []option, flags map[string][]string, env map[string]string) (path, from string) {
	for _, o := range opts {
		if o.name != configOption {
			continue
		}
		if vals, ok := flags[o.name]; ok {
			return vals[len(vals)-1], "flag --" + o.name
		}
		if s, ok := env[o.env]; ok {
			return s, "environment variable " + o.env
		}
		return dst.Field(o.index).String(), "default"
	}
	return "", ""
}

// applyFile sets the options found in the YAML file at path. Every problem
// is returned, each naming the file, line and key, so that a file with
// several mistakes can be fixed in one pass.
func applyFile(dst reflect.Value, opts []option, path, from string) []error {
	data, err := os.ReadFile(path)
	if err != nil {
		return []error{fmt.Errorf("config file (from %s): %w", from, err)}
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return []error{fmt.Errorf("%s: %w", path, err)}
	}
	if len(doc.Content) == 0 {
		return nil // empty file
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.ShortTag() == "!!null" {
		return nil // only comments, or an explicit null
	}
	if root.Kind != yaml.MappingNode {
		return []error{fmt.Errorf("%s:%d: want a mapping of option names to values", path, root.Line)}
	}

	byName := make(map[string]option, len(opts))
	for _, o := range opts {
		byName[o.name] = o
	}
	var errs []error
	seen := make(map[string]int) // key → line
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			errs = append(errs, fmt.Errorf("%s:%d: keys must be option names", path, k.Line))
			continue
		}
		where := fmt.Sprintf("%s:%d: %s", path, k.Line, k.Value)
		o, ok := byName[k.Value]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("%s: unknown option%s", where, suggest(byName, k.Value)))
			continue
		case o.name == configOption:
			errs = append(errs, fmt.Errorf("%s: cannot be set in the file it names; use --%s or %s", where, o.name, o.env))
			continue
		case seen[k.Value] != 0:
			// yaml.v3 only rejects duplicates when decoding into a map or
			// struct; silently taking either value would hide a mistake.
			errs = append(errs, fmt.Errorf("%s: already set on line %d", where, seen[k.Value]))
			continue
		}
		seen[k.Value] = k.Line
		if err := setNode(dst.Field(o.index), o.kind, v); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", where, err))
		}
	}
	return errs
}

// setNode sets v from a YAML value. Scalars are parsed from their source
// text, exactly like flags and environment variables, rather than decoded
// by yaml.v3, so that every source accepts the same values: a bare 25 is
// rejected as a duration instead of becoming 25ns.
func setNode(v reflect.Value, k kind, n *yaml.Node) error {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	switch {
	case n.Kind == yaml.ScalarNode:
		s := n.Value
		if n.ShortTag() == "!!null" {
			s = "" // "key:" with no value, ~ or null
		}
		return setText(v, k, s)
	case n.Kind == yaml.SequenceNode && k == kindList:
		var items []string
		for _, e := range n.Content {
			if e.Kind == yaml.AliasNode {
				e = e.Alias
			}
			if e.Kind != yaml.ScalarNode {
				return fmt.Errorf("line %d: list items must be single values", e.Line)
			}
			if s := strings.TrimSpace(e.Value); s != "" && e.ShortTag() != "!!null" {
				items = append(items, s)
			}
		}
		setList(v, items)
		return nil
	case k == kindList:
		return errors.New("want a list or a comma-separated string")
	}
	return errors.New("want a single value")
}

// suggest returns a hint for an unknown key written in another common
// style (ping_interval, Ping-Interval), or "".
func suggest(byName map[string]option, key string) string {
	if o, ok := byName[strings.ToLower(strings.ReplaceAll(key, "_", "-"))]; ok {
		return fmt.Sprintf(" (did you mean %s?)", o.name)
	}
	return ""
}
