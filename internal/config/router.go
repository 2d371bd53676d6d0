package config

import (
	"errors"
	"reflect"
	"time"
)

// RouterConfig configures `floodgate router`, the stateless process that
// tells clients which gateway to connect to.
type RouterConfig struct {
	Config string `flag:"config" usage:"YAML configuration file (keys are the flag names)"`

	Listen    string `flag:"listen" usage:"address for GET /v1/route"`
	OpsListen string `flag:"ops-listen" usage:"address for /metrics, /livez and /readyz; empty disables"`
	TLSCert   string `flag:"tls-cert" usage:"PEM certificate file; with --tls-key serves https://"`
	TLSKey    string `flag:"tls-key" usage:"PEM private key file"`

	NATSURLs          []string      `flag:"nats-url" usage:"NATS server URL(s) of the cluster, comma-separated"`
	HeartbeatInterval time.Duration `flag:"heartbeat-interval" usage:"the nodes' heartbeat interval; a node silent for 3 intervals is considered gone"`
	RouteTTL          time.Duration `flag:"route-ttl" usage:"how long clients may cache an answer"`

	LogLevel  string `flag:"log-level" usage:"debug, info, warn or error"`
	LogFormat string `flag:"log-format" usage:"text or json"`
}

// DefaultRouter returns the router's defaults.
func DefaultRouter() RouterConfig {
	return RouterConfig{
		Listen:            ":7000",
		OpsListen:         ":7001",
		HeartbeatInterval: time.Second,
		RouteTTL:          30 * time.Second,
		LogLevel:          "info",
		LogFormat:         "text",
	}
}

// LoadRouter is Load for RouterConfig.
func LoadRouter(args, environ []string) (RouterConfig, error) {
	cfg := DefaultRouter()
	if err := load(reflect.ValueOf(&cfg).Elem(), args, environ); err != nil {
		return RouterConfig{}, err
	}
	return cfg, nil
}

// Validate reports every value of c that cannot work.
func (c RouterConfig) Validate() error {
	var p problems
	if len(c.NATSURLs) == 0 {
		p.addf("nats-url", "is required: the router learns the cluster from the bus")
	}
	if c.HeartbeatInterval <= 0 {
		p.addf("heartbeat-interval", "must be positive")
	}
	if c.RouteTTL <= 0 {
		p.addf("route-ttl", "must be positive")
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		p.addf("tls-cert", "and tls-key go together")
	}
	validLog(&p, c.LogLevel, c.LogFormat)
	return errors.Join(p...)
}
