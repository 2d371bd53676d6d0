// Command chat is a small terminal chat on Floodgate, written with the Go
// SDK: it prints the messages of one conversation and sends the lines typed
// on standard input.
//
//	chat -url ws://127.0.0.1:7070/v1/ws -app app_3kq9 -token "$TOKEN" -to bob
//	chat -url ws://127.0.0.1:7070/v1/ws -app app_3kq9 -secret "$SECRET" -user alice -room r:lobby
//
// -secret mints the user's token locally with the app's secret, which only
// an app's backend should hold: it is meant for development.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/floodgate/floodgate/client"
	"github.com/floodgate/floodgate/protocol"
	"github.com/floodgate/floodgate/token"
)

type config struct {
	url, app, token, secret, user string
	to, group, room               string
}

func main() {
	var cfg config
	flag.StringVar(&cfg.url, "url", "ws://127.0.0.1:7070/v1/ws", "gateway WebSocket URL")
	flag.StringVar(&cfg.app, "app", "", "app id")
	flag.StringVar(&cfg.token, "token", "", "user token (a JWT from the app's backend)")
	flag.StringVar(&cfg.secret, "secret", "", "app secret, to mint a token for -user (development only)")
	flag.StringVar(&cfg.user, "user", "", "user id, with -secret")
	flag.StringVar(&cfg.to, "to", "", "chat with this user")
	flag.StringVar(&cfg.group, "group", "", "chat in this group")
	flag.StringVar(&cfg.room, "room", "", "chat in this room")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "chat:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cfg config) error {
	tokenFunc, err := tokenSource(cfg)
	if err != nil {
		return err
	}
	if n := count(cfg.to, cfg.group, cfg.room); n != 1 {
		return errors.New("give exactly one of -to, -group and -room")
	}

	dialCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, err := client.Dial(dialCtx, client.Options{
		URL:    cfg.url,
		App:    cfg.app,
		Token:  tokenFunc,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return err
	}
	defer c.Close()

	conv := cfg.group
	switch {
	case cfg.to != "":
		d, err := c.Direct(ctx, cfg.to)
		if err != nil {
			return err
		}
		conv = d.ID
	case cfg.room != "":
		if _, err := c.JoinRoom(ctx, cfg.room); err != nil {
			return err
		}
		conv = cfg.room
	}

	ctx, cancel = context.WithCancel(ctx)
	defer cancel()
	go func() {
		defer cancel() // the server stopped us, or the client was closed
		printEvents(c.Events(), conv)
	}()

	lines := make(chan string)
	go func() { // ends with the process: a read from stdin cannot be cancelled
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case line, ok := <-lines:
			if !ok {
				return nil
			}
			if line == "" {
				continue
			}
			// Send resends across reconnects until it is stored; bound
			// the wait so a dead network does not hang the prompt.
			sendCtx, cancel := context.WithTimeout(ctx, time.Minute)
			_, err := c.Send(sendCtx, conv, map[string]string{"text": line})
			cancel()
			if err != nil {
				fmt.Fprintln(os.Stderr, "not sent:", err)
			}
		}
	}
}

// tokenSource returns the Token function: the fixed -token, or a token
// minted for -user with -secret on every connection, so it never expires.
func tokenSource(cfg config) (func(context.Context) (string, error), error) {
	switch {
	case cfg.token != "":
		return func(context.Context) (string, error) { return cfg.token, nil }, nil
	case cfg.secret != "" && cfg.user != "":
		return func(context.Context) (string, error) {
			now := time.Now()
			return token.Mint(cfg.secret, token.Claims{User: cfg.user, App: cfg.app, IssuedAt: now, Expires: now.Add(time.Hour)})
		}, nil
	}
	return nil, errors.New("give -token, or -secret and -user")
}

func printEvents(events <-chan client.Event, conv string) {
	for ev := range events {
		switch ev.Type {
		case client.EventMessage:
			if m := ev.Message; m.Conv == conv {
				fmt.Printf("[%s] %s\n", sender(m), text(m.Body))
			}
		case client.EventConnected:
			fmt.Fprintf(os.Stderr, "* connected to %s as %s\n", ev.State.Auth.Node, ev.State.Auth.User)
		case client.EventDisconnected:
			fmt.Fprintf(os.Stderr, "* disconnected (%v), reconnecting…\n", ev.State.Err)
		case client.EventStopped:
			fmt.Fprintf(os.Stderr, "* stopped: %v\n", ev.State.Err)
		}
	}
}

func sender(m *protocol.Message) string {
	if m.Sender == "" {
		return "system"
	}
	return m.Sender
}

// text shows a {"text": …} body as its text, anything else as JSON.
func text(body json.RawMessage) string {
	var b struct {
		Text *string `json:"text"`
	}
	if json.Unmarshal(body, &b) == nil && b.Text != nil {
		return *b.Text
	}
	return string(body)
}

func count(ss ...string) int {
	n := 0
	for _, s := range ss {
		if s != "" {
			n++
		}
	}
	return n
}
