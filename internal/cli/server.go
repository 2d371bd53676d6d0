package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/signal"
	"syscall"

	"github.com/floodgate/floodgate/internal/config"
	"github.com/floodgate/floodgate/internal/server"
)

func runServer(env Env, args []string) error {
	cfg, err := config.Load(args, env.Environ)
	if errors.Is(err, config.ErrHelp) {
		config.Usage(env.Stdout, "floodgate server")
		return errHelp
	}
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	log := newLogger(env, cfg.LogLevel, cfg.LogFormat)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	srv, err := server.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	if tok, generated := srv.AdminToken(); generated {
		fmt.Fprintf(env.Stderr, "Generated an admin token (kept in %s/%s):\n\n    %s\n\n"+
			"Create an app with: floodgate app create my-app\n\n", cfg.DataDir, server.AdminTokenFile, tok)
	}
	return srv.Run(ctx)
}

func newLogger(env Env, levelName, format string) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(levelName)) // validated by config
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(env.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(env.Stderr, opts))
}
