package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/floodgate/floodgate/protocol"
)

// randomPrefix returns a fresh user prefix: parallel runs against the same
// app must not share users, or each would receive the other's messages.
func randomPrefix() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "b" + hex.EncodeToString(b[:]) + "-"
}

// createApp creates a throwaway app through the admin API and returns its
// id and secret.
func createApp(ctx context.Context, hc *http.Client, adminURL, adminToken, name string) (id, secret string, err error) {
	body, _ := json.Marshal(map[string]string{"name": name})
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(adminURL, "/")+"/admin/v1/apps", bytes.NewReader(body))
	if err != nil {
		return "", "", err
	}
	req.Header.Set("Authorization", "Bearer "+adminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return "", "", fmt.Errorf("creating an app: %w", err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		return "", "", fmt.Errorf("creating an app: HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(data))
	}
	var a struct {
		ID     string `json:"id"`
		Secret string `json:"secret"`
	}
	if err := json.Unmarshal(data, &a); err != nil || a.ID == "" || a.Secret == "" {
		return "", "", fmt.Errorf("creating an app: unexpected answer %q", data)
	}
	return a.ID, a.Secret, nil
}

// preflight connects the coordinator's own client once before any load:
// it proves the URL, app and secret work (a wrong secret fails here, with
// one clear error, rather than as N connection failures), learns the
// server's keepalive interval and rate limit, and creates what the shards
// share (the room).
func preflight(ctx context.Context, p *Plan) error {
	var errs errorCounts
	d := newDialer(p, &errs)
	defer d.close()
	saved := p.Retries
	p.Retries = min(p.Retries, 2)
	c, _, err := d.connect(ctx, 0, dialOpts{user: p.UserPrefix + "coord"})
	p.Retries = saved
	if err != nil {
		return fmt.Errorf("preflight connection to %s: %w", firstNonEmpty(p.gatewayFor(0), p.Router), err)
	}
	defer c.Close()
	p.PingInterval = time.Duration(c.auth.PingIntervalMS) * time.Millisecond
	p.RateLimit = c.auth.Limits.Rate
	if p.Scenario == ScenarioRoom {
		var res protocol.ConvResult
		id := p.UserPrefix + "room"
		err := c.Call(ctx, protocol.OpConvCreate, protocol.CreateArgs{ID: id, Kind: protocol.KindRoom, Name: "floodgate bench"}, &res)
		var perr *protocol.Error
		switch {
		case err == nil:
			p.Room = res.Conversation.ID
		case errors.As(err, &perr) && perr.Code == protocol.CodeConflict:
			p.Room = id // a previous run with this prefix created it
		default:
			return fmt.Errorf("creating the room: %w", err)
		}
	}
	return nil
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}
