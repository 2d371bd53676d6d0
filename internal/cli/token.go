package cli

import (
	"flag"
	"fmt"
	"time"

	"github.com/floodgate/floodgate/token"
)

// runToken mints a user token. Production backends mint their own; this is
// for trying Floodgate out and for scripts.
func runToken(env Env, args []string) error {
	fs := flag.NewFlagSet("floodgate token", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	app := fs.String("app", lookupEnv(env.Environ, "FLOODGATE_APP"), "app id (env FLOODGATE_APP)")
	secret := fs.String("secret", lookupEnv(env.Environ, "FLOODGATE_APP_SECRET"), "app secret (env FLOODGATE_APP_SECRET)")
	user := fs.String("user", "", "user id (the token's sub)")
	device := fs.String("device", "", "device id (optional)")
	ttl := fs.Duration("ttl", 24*time.Hour, "validity")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return errHelp
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if *app == "" || *secret == "" || *user == "" || fs.NArg() != 0 {
		return fmt.Errorf("%w: token needs --app, --secret and --user", errUsage)
	}
	now := time.Now()
	tok, err := token.Mint(*secret, token.Claims{User: *user, Device: *device, App: *app, IssuedAt: now, Expires: now.Add(*ttl)})
	if err != nil {
		return err
	}
	fmt.Fprintln(env.Stdout, tok)
	return nil
}
