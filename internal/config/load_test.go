package config

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// allKinds has a field of every supported kind, so that parsing is tested
// for kinds Config does not happen to use yet.
type allKinds struct {
	Config string        `flag:"config" usage:"YAML file"`
	Str    string        `flag:"str" usage:"a string"`
	Int    int           `flag:"int" usage:"an int"`
	Int64  int64         `flag:"int64" usage:"an int64"`
	Float  float64       `flag:"float" usage:"a float"`
	Bool   bool          `flag:"bool" usage:"a bool"`
	Dur    time.Duration `flag:"dur" usage:"a duration"`
	List   []string      `flag:"list" usage:"a list"`
}

// allKindsDefault is distinct from every value the tests set, so that a
// value that was not applied shows.
func allKindsDefault() allKinds {
	return allKinds{Str: "def", Int: 1, Int64: 2, Float: 0.5, Dur: time.Second, List: []string{"def"}}
}

// writeFile writes a YAML file into a fresh temporary directory.
func writeFile(t *testing.T, yaml string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "floodgate.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// loadKinds runs the loader on an allKinds holding allKindsDefault. A
// non-empty yaml is written to a file named by FLOODGATE_CONFIG.
func loadKinds(t *testing.T, args, environ []string, yaml string) (allKinds, error) {
	t.Helper()
	if yaml != "" {
		environ = append([]string{"FLOODGATE_CONFIG=" + writeFile(t, yaml)}, environ...)
	}
	got := allKindsDefault()
	err := load(reflect.ValueOf(&got).Elem(), args, environ)
	got.Config = "" // the path differs per run; TestConfigPath covers it
	return got, err
}

func TestEachKindFromEachSource(t *testing.T) {
	tests := []struct {
		name string // option
		text string // as a flag or environment value
		yaml string // as a YAML value
		want func(*allKinds)
	}{
		{"str", "hello, world", `"hello, world"`, func(c *allKinds) { c.Str = "hello, world" }},
		{"str", "", `""`, func(c *allKinds) { c.Str = "" }},
		{"int", "-42", "-42", func(c *allKinds) { c.Int = -42 }},
		{"int64", "9000000000", "9000000000", func(c *allKinds) { c.Int64 = 9000000000 }},
		{"float", "2.5", "2.5", func(c *allKinds) { c.Float = 2.5 }},
		{"float", "1e3", "1e3", func(c *allKinds) { c.Float = 1000 }},
		{"bool", "true", "true", func(c *allKinds) { c.Bool = true }},
		{"dur", "1m30s", "1m30s", func(c *allKinds) { c.Dur = 90 * time.Second }},
		{"dur", " 250ms ", "250ms", func(c *allKinds) { c.Dur = 250 * time.Millisecond }},
		{"list", "a, b,c", "a, b,c", func(c *allKinds) { c.List = []string{"a", "b", "c"} }},
		{"list", "", `""`, func(c *allKinds) { c.List = nil }},
	}
	for _, tt := range tests {
		want := allKindsDefault()
		tt.want(&want)
		sources := []struct {
			source        string
			args, environ []string
			yaml          string
		}{
			{"flag", []string{"--" + tt.name + "=" + tt.text}, nil, ""},
			{"single-dash flag", []string{"-" + tt.name + "=" + tt.text}, nil, ""},
			{"env", nil, []string{envName(tt.name) + "=" + tt.text}, ""},
			{"file", nil, nil, tt.name + ": " + tt.yaml + "\n"},
		}
		for _, s := range sources {
			t.Run(tt.name+"="+tt.text+"/"+s.source, func(t *testing.T) {
				got, err := loadKinds(t, s.args, s.environ, s.yaml)
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(got, want) {
					t.Errorf("got %+v, want %+v", got, want)
				}
			})
		}
	}
}

func TestFileValueShapes(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want func(*allKinds)
	}{
		{"flow list", "list: [a, b]", func(c *allKinds) { c.List = []string{"a", "b"} }},
		{"block list", "list:\n  - nats://a:4222\n  - nats://b:4222\n", func(c *allKinds) { c.List = []string{"nats://a:4222", "nats://b:4222"} }},
		{"empty list", "list: []", func(c *allKinds) { c.List = nil }},
		{"null list", "list:", func(c *allKinds) { c.List = nil }},
		{"null string", "str: ~", func(c *allKinds) { c.Str = "" }},
		{"quoted null is a string", `str: "null"`, func(c *allKinds) { c.Str = "null" }},
		{"number as string", "str: 0x1F", func(c *allKinds) { c.Str = "0x1F" }},
		{"alias", "int: &n 7\nint64: *n", func(c *allKinds) { c.Int = 7; c.Int64 = 7 }},
		{"empty file", "", func(*allKinds) {}},
		{"only comments", "# nothing\n", func(*allKinds) {}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := allKindsDefault()
			tt.want(&want)
			// loadKinds skips empty YAML; write it explicitly here.
			got := allKindsDefault()
			err := load(reflect.ValueOf(&got).Elem(), []string{"--config", writeFile(t, tt.yaml)}, nil)
			if err != nil {
				t.Fatal(err)
			}
			got.Config = ""
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got %+v, want %+v", got, want)
			}
		})
	}
}

func TestBoolFlagForms(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want bool
	}{
		{[]string{"--bool"}, true},
		{[]string{"--bool=false"}, false},
		{[]string{"--bool=0"}, false},
		{[]string{"--bool=1"}, true},
	} {
		// The environment says the opposite, to show the flag wins.
		got, err := loadKinds(t, tt.args, []string{"FLOODGATE_BOOL=" + strconv.FormatBool(!tt.want)}, "")
		if err != nil {
			t.Fatalf("%v: %v", tt.args, err)
		}
		if got.Bool != tt.want {
			t.Errorf("%v: got %v, want %v", tt.args, got.Bool, tt.want)
		}
	}
}

// Layers, in increasing precedence.
const (
	layerFile = iota
	layerEnv
	layerFlag
)

// layerText is a value for option o distinct in each layer (bool, having
// two values, alternates), as flag or environment text and as YAML.
func layerText(o option, layer int) (text, yaml string) {
	n := strconv.Itoa(101 + layer)
	switch o.kind {
	case kindInt:
		return n, n
	case kindFloat:
		return n + ".5", n + ".5"
	case kindBool:
		b := strconv.FormatBool(layer != layerEnv)
		return b, b
	case kindDuration:
		return n + "s", n + "s"
	case kindList:
		// Several items, and a YAML list, to exercise both list forms.
		return "l" + n + ",m" + n, "[l" + n + ", m" + n + "]"
	}
	return o.name + "-" + n, strconv.Quote(o.name + "-" + n)
}

// TestPrecedence sets each option of Config in a different combination of
// layers, cycling through all eight, with a different value in each layer,
// and checks that every field took the value of its highest layer: file <
// env < flag, per field. Options are found by reflection, so a new field is
// covered without editing the test.
func TestPrecedence(t *testing.T) {
	all := []bool{true, true, true}
	for _, tt := range []struct {
		name   string
		layers func(i int) []bool // which layers set the i'th option
	}{
		{"all three layers for every option", func(int) []bool { return all }},
		{"a different combination per option", func(i int) []bool {
			return []bool{i&1 != 0, i&2 != 0, i&4 != 0}
		}},
		{"shifted combinations", func(i int) []bool {
			i += 3
			return []bool{i&1 != 0, i&2 != 0, i&4 != 0}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			opts := optionsOf(reflect.TypeFor[Config]())
			var yaml strings.Builder
			var environ, args []string
			want := Default()
			wantV := reflect.ValueOf(&want).Elem()
			for i, o := range opts {
				if o.name == configOption {
					continue
				}
				set := tt.layers(i)
				for layer, ok := range set {
					if !ok {
						continue
					}
					text, y := layerText(o, layer)
					switch layer {
					case layerFile:
						yaml.WriteString(o.name + ": " + y + "\n")
					case layerEnv:
						environ = append(environ, o.env+"="+text)
					case layerFlag:
						args = append(args, "--"+o.name+"="+text) // the = form also suits bool flags
					}
					// Layers are visited in increasing precedence, so
					// the last one set is the expected winner.
					if err := setText(wantV.Field(o.index), o.kind, text); err != nil {
						t.Fatal(err)
					}
				}
			}
			path := writeFile(t, yaml.String())
			want.Config = path
			got, err := Load(append(args, "--config="+path), environ)
			if err != nil {
				t.Fatal(err)
			}
			gotV := reflect.ValueOf(got)
			for _, o := range opts {
				if g, w := gotV.Field(o.index).Interface(), wantV.Field(o.index).Interface(); !reflect.DeepEqual(g, w) {
					t.Errorf("%s: got %v, want %v (set in file/env/flag: %v)", o.name, g, w, tt.layers(o.index))
				}
			}
		})
	}
}

func TestPrecedenceExample(t *testing.T) {
	path := writeFile(t, "listen: \":8080\"\nping-interval: 30s\nnats-url: [nats://file:4222]\nmax-conns: 10\n")
	got, err := Load(
		[]string{"--config", path, "--nats-url", "nats://flag:4222"},
		[]string{"FLOODGATE_PING_INTERVAL=40s", "FLOODGATE_NATS_URL=nats://env:4222"},
	)
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Config = path
	want.Listen = ":8080"                        // file only
	want.MaxConns = 10                           // file only
	want.PingInterval = 40 * time.Second         // env beats file
	want.NATSURLs = []string{"nats://flag:4222"} // flag beats env and file
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
}

func TestDefaults(t *testing.T) {
	got, err := Load(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, Default()) {
		t.Errorf("Load with nothing set = %+v, want Default()", got)
	}
	if err := got.Validate(); err != nil {
		t.Errorf("Default().Validate() = %v", err)
	}
}

func TestConfigPath(t *testing.T) {
	envFile := writeFile(t, "listen: from-env-file\n")
	flagFile := writeFile(t, "listen: from-flag-file\n")
	tests := []struct {
		name       string
		args       []string
		environ    []string
		wantListen string
		wantConfig string
	}{
		{"environment", nil, []string{"FLOODGATE_CONFIG=" + envFile}, "from-env-file", envFile},
		{"flag beats environment", []string{"--config", flagFile}, []string{"FLOODGATE_CONFIG=" + envFile}, "from-flag-file", flagFile},
		{"empty flag disables the file", []string{"--config="}, []string{"FLOODGATE_CONFIG=" + envFile}, ":7070", ""},
		{"empty environment variable", nil, []string{"FLOODGATE_CONFIG="}, ":7070", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Load(tt.args, tt.environ)
			if err != nil {
				t.Fatal(err)
			}
			if got.Listen != tt.wantListen || got.Config != tt.wantConfig {
				t.Errorf("listen %q, config %q; want %q, %q", got.Listen, got.Config, tt.wantListen, tt.wantConfig)
			}
		})
	}
}

func TestEnvironment(t *testing.T) {
	path := writeFile(t, "nats-url: [nats://a:4222]\nnode-id: n1\n")
	got, err := Load([]string{"--config", path}, []string{
		"FLOODGATE_NATS_URL=", // present but empty: clears the file's list
		"FLOODGATE_NODE_ID=first",
		"FLOODGATE_NODE_ID=second",  // duplicates: the first wins, as with os.Getenv
		"FLOODGATE_SERVER=http://x", // used by other subcommands; not an error here
		"floodgate_listen=:1",       // names are case-sensitive
		"NOEQUALS",
	})
	if err != nil {
		t.Fatal(err)
	}
	if got.NATSURLs != nil || got.NodeID != "first" || got.Listen != ":7070" {
		t.Errorf("nats-url %q, node-id %q, listen %q", got.NATSURLs, got.NodeID, got.Listen)
	}
}

func TestRepeatedFlags(t *testing.T) {
	got, err := Load([]string{"--nats-url", "a,b", "--nats-url=c", "--listen", ":1", "--listen", ":2"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"a", "b", "c"}; !reflect.DeepEqual(got.NATSURLs, want) {
		t.Errorf("repeated list flag: got %q, want %q", got.NATSURLs, want)
	}
	if got.Listen != ":2" {
		t.Errorf("repeated flag: got %q, want the last, :2", got.Listen)
	}
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{
		{"-h"}, {"--h"}, {"-help"}, {"--help"},
		{"--listen", ":1", "--help"},
		{"--help", "--no-such-flag"}, // help wins over what follows
	} {
		// A broken environment and file must not stand in the way of help.
		_, err := Load(args, []string{"FLOODGATE_MAX_CONNS=many", "FLOODGATE_CONFIG=/nonexistent"})
		if !errors.Is(err, ErrHelp) || !errors.Is(err, flag.ErrHelp) {
			t.Errorf("Load(%q) = %v, want ErrHelp wrapping flag.ErrHelp", args, err)
		}
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		environ []string
		yaml    string // written to a file named by --config
		want    []string
	}{
		{name: "unknown flag", args: []string{"--listne", ":1"},
			want: []string{"not defined", "-listne"}},
		{name: "flag without value", args: []string{"--listen"},
			want: []string{"needs an argument", "-listen"}},
		{name: "positional argument", args: []string{"--listen", ":1", "extra"},
			want: []string{`unexpected argument "extra"`}},
		{name: "argument after --", args: []string{"--", "--listen"},
			want: []string{`unexpected argument "--listen"`}},
		{name: "bad duration flag", args: []string{"--ping-interval", "soon"},
			want: []string{"flag --ping-interval", `"soon"`, "duration"}},
		{name: "duration without unit", args: []string{"--ping-interval=25"},
			want: []string{"flag --ping-interval", `"25"`, "unit"}},
		{name: "bad duration env", environ: []string{"FLOODGATE_AUTH_TIMEOUT=5 seconds"},
			want: []string{"environment variable FLOODGATE_AUTH_TIMEOUT", `"5 seconds"`, "duration"}},
		{name: "bad duration file", yaml: "listen: \":1\"\nwrite-timeout: 10\n",
			want: []string{"floodgate.yaml:2: write-timeout", `"10"`, "duration"}},
		{name: "bad int", args: []string{"--max-conns=1e5"},
			want: []string{"flag --max-conns", "whole number"}},
		{name: "int out of range", environ: []string{"FLOODGATE_BURST=99999999999999999999"},
			want: []string{"FLOODGATE_BURST", "out of range"}},
		{name: "bad float", yaml: "rate: fast\n",
			want: []string{"floodgate.yaml:1: rate", "number"}},
		{name: "empty env int", environ: []string{"FLOODGATE_MAX_ROOMS="},
			want: []string{"FLOODGATE_MAX_ROOMS", `invalid value ""`}},
		{name: "unknown key", yaml: "listen: \":1\"\nlistne: \":2\"\n",
			want: []string{"floodgate.yaml:2: listne: unknown option"}},
		{name: "key in another style", yaml: "ping_interval: 1s\n",
			want: []string{"ping_interval: unknown option", "did you mean ping-interval?"}},
		{name: "duplicate key", yaml: "listen: \":1\"\nlisten: \":2\"\n",
			want: []string{"floodgate.yaml:2: listen: already set on line 1"}},
		{name: "config key in file", yaml: "config: other.yaml\n",
			want: []string{"floodgate.yaml:1: config: cannot be set"}},
		{name: "list for scalar", yaml: "listen: [a, b]\n",
			want: []string{"floodgate.yaml:1: listen: want a single value"}},
		{name: "mapping for list", yaml: "nats-url: {a: b}\n",
			want: []string{"floodgate.yaml:1: nats-url: want a list"}},
		{name: "nested list item", yaml: "nats-url:\n  - [a]\n",
			want: []string{"floodgate.yaml:1: nats-url: line 2: list items"}},
		{name: "not a mapping", yaml: "- listen\n",
			want: []string{"floodgate.yaml:1: want a mapping"}},
		{name: "yaml syntax", yaml: "listen: \"unterminated\n",
			want: []string{"floodgate.yaml", "yaml:"}},
		{name: "missing file", args: []string{"--config", "/nonexistent/floodgate.yaml"},
			want: []string{"config file (from flag --config)", "/nonexistent/floodgate.yaml"}},
		{name: "missing file from env", environ: []string{"FLOODGATE_CONFIG=/nonexistent/f.yaml"},
			want: []string{"config file (from environment variable FLOODGATE_CONFIG)"}},
		{name: "every problem reported",
			yaml:    "listne: x\nrate: fast\n",
			environ: []string{"FLOODGATE_BURST=lots"},
			args:    []string{"--max-rooms=few"},
			want:    []string{"listne", "rate", "FLOODGATE_BURST", "--max-rooms"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.args
			if tt.yaml != "" {
				args = append([]string{"--config", writeFile(t, tt.yaml)}, args...)
			}
			got, err := Load(args, tt.environ)
			if err == nil {
				t.Fatalf("no error; got %+v", got)
			}
			if errors.Is(err, ErrHelp) {
				t.Fatalf("error %v is ErrHelp", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}
