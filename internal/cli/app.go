package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/floodgate/floodgate/internal/server"
)

// adminClient calls a node's admin API.
type adminClient struct {
	base, token string
	http        *http.Client
}

func lookupEnv(environ []string, key string) string {
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			return v
		}
	}
	return ""
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// adminFlags registers the flags every admin command takes and returns a
// function building the client once they are parsed.
func adminFlags(fs *flag.FlagSet, env Env) func() (*adminClient, error) {
	srv := fs.String("server", orDefault(lookupEnv(env.Environ, "FLOODGATE_SERVER"), "http://127.0.0.1:7070"),
		"base URL of a node's HTTP API (env FLOODGATE_SERVER)")
	tok := fs.String("admin-token", lookupEnv(env.Environ, "FLOODGATE_ADMIN_TOKEN"),
		"admin token (env FLOODGATE_ADMIN_TOKEN; default: read from --data-dir)")
	dir := fs.String("data-dir", orDefault(lookupEnv(env.Environ, "FLOODGATE_DATA_DIR"), "./data"),
		"data directory of a local node, where a generated admin token is kept (env FLOODGATE_DATA_DIR)")
	return func() (*adminClient, error) {
		t := *tok
		if t == "" {
			b, err := os.ReadFile(filepath.Join(*dir, server.AdminTokenFile))
			if err != nil {
				return nil, fmt.Errorf("no admin token: set --admin-token or FLOODGATE_ADMIN_TOKEN, or run next to the node's data dir (%v)", err)
			}
			t = strings.TrimSpace(string(b))
		}
		return &adminClient{base: strings.TrimRight(*srv, "/"), token: t, http: &http.Client{Timeout: 15 * time.Second}}, nil
	}
}

func (c *adminClient) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if json.Unmarshal(data, &e) == nil && e.Error.Code != "" {
			return fmt.Errorf("%s %s: %s: %s", method, path, e.Error.Code, e.Error.Message)
		}
		return fmt.Errorf("%s %s: HTTP %d", method, path, resp.StatusCode)
	}
	if out != nil && len(data) > 0 {
		return json.Unmarshal(data, out)
	}
	return nil
}

type appView struct {
	ID                       string `json:"id"`
	Name                     string `json:"name"`
	Secret                   string `json:"secret"`
	Disabled                 bool   `json:"disabled"`
	CreatedAt                int64  `json:"created_at"`
	PreviousSecretValidUntil int64  `json:"previous_secret_valid_until"`
}

func runApp(env Env, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: app needs a subcommand: create, list, rotate, disable, enable", errUsage)
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("floodgate app "+sub, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	client := adminFlags(fs, env)
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return errHelp
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	wantArgs := map[string]int{"create": 1, "list": 0, "rotate": 1, "disable": 1, "enable": 1}
	n, ok := wantArgs[sub]
	if !ok {
		return fmt.Errorf("%w: unknown app subcommand %q", errUsage, sub)
	}
	if fs.NArg() != n {
		return fmt.Errorf("%w: app %s takes %d argument(s)", errUsage, sub, n)
	}
	c, err := client()
	if err != nil {
		return err
	}
	ctx := context.Background()
	switch sub {
	case "create":
		var a appView
		if err := c.do(ctx, "POST", "/admin/v1/apps", map[string]string{"name": fs.Arg(0)}, &a); err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "app:    %s\nname:   %s\nsecret: %s\n", a.ID, a.Name, a.Secret)
	case "list":
		var out struct{ Apps []appView }
		if err := c.do(ctx, "GET", "/admin/v1/apps", nil, &out); err != nil {
			return err
		}
		for _, a := range out.Apps {
			state := "enabled"
			if a.Disabled {
				state = "disabled"
			}
			fmt.Fprintf(env.Stdout, "%s\t%s\t%s\n", a.ID, state, a.Name)
		}
	case "rotate":
		var a appView
		if err := c.do(ctx, "POST", "/admin/v1/apps/"+fs.Arg(0)+"/rotate-secret", nil, &a); err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "app:    %s\nsecret: %s\nprevious secret valid until %s\n", a.ID, a.Secret,
			time.UnixMilli(a.PreviousSecretValidUntil).UTC().Format(time.RFC3339))
	case "disable", "enable":
		if err := c.do(ctx, "POST", "/admin/v1/apps/"+fs.Arg(0)+"/"+sub, nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "app %s %sd\n", fs.Arg(0), sub)
	}
	return nil
}
