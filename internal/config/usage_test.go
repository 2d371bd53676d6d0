package config

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestUsageDocumentsEveryField walks Config by reflection, independently of
// optionsOf, so that a field added to Config cannot be left out of
// `floodgate server --help`.
func TestUsageDocumentsEveryField(t *testing.T) {
	var b strings.Builder
	Usage(&b, "floodgate server")
	out := b.String()
	if !strings.HasPrefix(out, "Usage: floodgate server [flags]\n") {
		t.Errorf("usage does not start with the command:\n%s", out)
	}
	typ := reflect.TypeFor[Config]()
	last := -1
	for i := range typ.NumField() {
		f := typ.Field(i)
		name, usage := f.Tag.Get("flag"), f.Tag.Get("usage")
		if name == "" || usage == "" {
			t.Errorf("field %s: want both a flag and a usage tag", f.Name)
			continue
		}
		env := "FLOODGATE_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
		line := "  --" + name + " "
		at := strings.Index(out, line)
		if at < 0 {
			t.Errorf("usage does not mention --%s", name)
			continue
		}
		if at < last {
			t.Errorf("--%s is out of field order", name)
		}
		last = at
		entry, _, _ := strings.Cut(out[at+len(line):], "\n  --")
		for _, want := range []string{"$" + env, usage} {
			if !strings.Contains(entry, want) {
				t.Errorf("usage of --%s does not contain %q:\n%s", name, want, entry)
			}
		}
	}
}

func TestUsageDefaults(t *testing.T) {
	var b strings.Builder
	Usage(&b, "floodgate server")
	out := b.String()
	for _, want := range []string{
		"--ping-interval DURATION  $FLOODGATE_PING_INTERVAL  (default 25s)",
		"--secret-grace DURATION  $FLOODGATE_SECRET_GRACE  (default 24h)",
		`--listen STRING  $FLOODGATE_LISTEN  (default ":7070")`,
		"--max-conns INT  $FLOODGATE_MAX_CONNS  (default 100000)",
		"--rate NUMBER  $FLOODGATE_RATE  (default 50)",
		"--nats-url LIST  $FLOODGATE_NATS_URL\n", // empty default: none shown
	} {
		if !strings.Contains(out, want) {
			t.Errorf("usage does not contain %q:\n%s", want, out)
		}
	}
}

func TestUsageOfEveryKind(t *testing.T) {
	var b strings.Builder
	def := allKindsDefault()
	def.Bool = true
	writeOptions(&b, reflect.ValueOf(def))
	out := b.String()
	for _, want := range []string{
		`--str STRING  $FLOODGATE_STR  (default "def")`,
		"--int INT  $FLOODGATE_INT  (default 1)",
		"--int64 INT  $FLOODGATE_INT64  (default 2)",
		"--float NUMBER  $FLOODGATE_FLOAT  (default 0.5)",
		"--bool  $FLOODGATE_BOOL  (default true)",
		"--dur DURATION  $FLOODGATE_DUR  (default 1s)",
		`--list LIST  $FLOODGATE_LIST  (default "def")`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("usage does not contain %q:\n%s", want, out)
		}
	}
}

// TestDefaultsRoundTrip checks that every default, as Usage prints it,
// parses back to itself, so it can be pasted into a flag or file.
func TestDefaultsRoundTrip(t *testing.T) {
	def := reflect.ValueOf(Default())
	for _, o := range optionsOf(def.Type()) {
		text := formatText(def.Field(o.index), o.kind)
		got := reflect.New(def.Field(o.index).Type()).Elem()
		if err := setText(got, o.kind, text); err != nil {
			t.Errorf("%s: default %q does not parse: %v", o.name, text, err)
			continue
		}
		if !reflect.DeepEqual(got.Interface(), def.Field(o.index).Interface()) {
			t.Errorf("%s: default %q parses to %v, want %v", o.name, text, got, def.Field(o.index))
		}
	}
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                                  "0s",
		500 * time.Millisecond:             "500ms",
		25 * time.Second:                   "25s",
		5 * time.Minute:                    "5m",
		90 * time.Second:                   "1m30s",
		24 * time.Hour:                     "24h",
		time.Hour + 30*time.Minute:         "1h30m",
		time.Hour + 5*time.Second:          "1h0m5s",
		-10 * time.Minute:                  "-10m",
		time.Minute + 500*time.Millisecond: "1m0.5s",
	} {
		if got := formatDuration(d); got != want {
			t.Errorf("formatDuration(%v) = %q, want %q", d, got, want)
		}
		if back, err := time.ParseDuration(want); err != nil || back != d {
			t.Errorf("%q does not parse back to %v", want, d)
		}
	}
}

func TestOptionsOfRejectsBadStructs(t *testing.T) {
	for name, typ := range map[string]reflect.Type{
		"untagged field": reflect.TypeFor[struct{ A string }](),
		"unsupported type": reflect.TypeFor[struct {
			A int32 `flag:"a"`
		}](),
		"unsupported list": reflect.TypeFor[struct {
			A []int `flag:"a"`
		}](),
		"duplicate name": reflect.TypeFor[struct {
			A string `flag:"a"`
			B string `flag:"a"`
		}](),
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			optionsOf(typ)
		})
	}
}

func TestEnvName(t *testing.T) {
	if got := envName("max-frame-bytes"); got != "FLOODGATE_MAX_FRAME_BYTES" {
		t.Errorf("envName = %q", got)
	}
}
