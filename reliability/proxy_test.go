package reliability

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"strings"
	"testing"

	"github.com/Shopify/toxiproxy/v2"
	mysqldrv "github.com/go-sql-driver/mysql"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
)

// faultProxy is a toxiproxy TCP proxy on loopback in front of a database,
// used as a library: no toxiproxy server process, no HTTP API.
type faultProxy struct {
	proxy *toxiproxy.Proxy
}

// newFaultProxy starts a proxy on a free loopback port to upstream.
func newFaultProxy(t *testing.T, upstream string) *faultProxy {
	t.Helper()
	server := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	p := toxiproxy.NewProxy(server, "db", "127.0.0.1:0", upstream)
	require.NoError(t, p.Start())
	t.Cleanup(p.Stop)
	return &faultProxy{proxy: p}
}

// Addr is the proxy's listening address.
func (f *faultProxy) Addr() string { return f.proxy.Listen }

// addToxic adds a toxic of typ to one stream ("upstream": client to
// database, "downstream": back).
func (f *faultProxy) addToxic(name, typ, stream string, attrs map[string]any) error {
	raw, err := json.Marshal(map[string]any{"name": name, "type": typ, "stream": stream, "attributes": attrs})
	if err != nil {
		return err
	}
	if _, err := f.proxy.Toxics.AddToxicJson(strings.NewReader(string(raw))); err != nil {
		return fmt.Errorf("add toxic %s: %w", name, err)
	}
	return nil
}

// latency delays every chunk by ms in both directions.
func (f *faultProxy) latency(ms int) error {
	if err := f.addToxic("lat_up", "latency", "upstream", map[string]any{"latency": ms}); err != nil {
		return err
	}
	return f.addToxic("lat_down", "latency", "downstream", map[string]any{"latency": ms})
}

// partition drops every byte both ways and keeps the connections open:
// the holder's statements vanish without an error, as in a network split.
func (f *faultProxy) partition() error {
	if err := f.addToxic("cut_up", "timeout", "upstream", map[string]any{"timeout": 0}); err != nil {
		return err
	}
	return f.addToxic("cut_down", "timeout", "downstream", map[string]any{"timeout": 0})
}

// heal removes every toxic.
func (f *faultProxy) heal() { f.proxy.Toxics.ResetToxics(context.Background()) }

// dropConnections closes every connection through the proxy and its
// listener, then listens again on the same port.
func (f *faultProxy) dropConnections() error {
	f.proxy.Stop()
	return f.proxy.Start()
}

// proxiedDSN returns the DSN of tg rewritten to go through addr, and the
// database's own address (the proxy's upstream).
func proxiedDSN(tg target, addr string) (dsn, upstream string, err error) {
	switch tg.Driver {
	case "postgres":
		u, err := url.Parse(tg.DSN)
		if err != nil || u.Host == "" {
			return "", "", fmt.Errorf("postgres DSN must be a URL to be proxied: %v", err)
		}
		upstream = u.Host
		if _, _, err := net.SplitHostPort(upstream); err != nil {
			upstream = net.JoinHostPort(upstream, "5432")
		}
		u.Host = addr
		return u.String(), upstream, nil
	case "mysql":
		cfg, err := mysqldrv.ParseDSN(tg.DSN)
		if err != nil {
			return "", "", err
		}
		upstream = cfg.Addr
		cfg.Net, cfg.Addr = "tcp", addr
		return cfg.FormatDSN(), upstream, nil
	}
	return "", "", fmt.Errorf("%s has no network to fault", tg.Driver)
}
