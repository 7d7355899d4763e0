package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/switchboard-chat/switchboard/pkg/chat"
	"github.com/switchboard-chat/switchboard/pkg/cluster"
	"github.com/switchboard-chat/switchboard/pkg/config"
)

// connectionsOut is what `connections --json` prints: the listener asked and the
// sockets it holds, oldest first.
type connectionsOut struct {
	InternalURL string        `json:"internal_url"`
	Connections []hostConnOut `json:"connections"`
}

type hostConnOut struct {
	UserID string    `json:"user_id"`
	HostID string    `json:"host_id"`
	ConnID string    `json:"conn_id"`
	Since  time.Time `json:"since"`
}

// connectionsTimeout bounds the internal call, retries included.
const connectionsTimeout = 10 * time.Second

// connections asks one host's internal listener for the sockets it holds, with a call
// signed by CHAT_CLUSTER_SECRET. target is a host id, found in the registry, or the
// listener's http(s) URL.
func (a *app) connections(ctx context.Context, target string) error {
	if a.cfg.ClusterSecret == "" {
		return &usageError{msg: fmt.Sprintf("CHAT_CLUSTER_SECRET is required: internal listeners answer only calls signed with it (at least %d bytes)", config.MinSecretBytes)}
	}
	if len(a.cfg.ClusterSecret) < config.MinSecretBytes {
		return &usageError{msg: fmt.Sprintf("CHAT_CLUSTER_SECRET must be at least %d bytes", config.MinSecretBytes)}
	}
	baseURL, err := a.internalURL(ctx, target)
	if err != nil {
		return err
	}
	client := cluster.NewClient(2, nil, a.log)
	defer client.HTTPClient.CloseIdleConnections()
	cctx, cancel := context.WithTimeout(ctx, connectionsTimeout)
	defer cancel()
	b, err := cluster.Get(cctx, client, cluster.NewSigner(a.cfg.ClusterSecret), baseURL, cluster.PathConnections)
	if err != nil {
		if strings.Contains(err.Error(), "bad_signature") {
			return fmt.Errorf("%w (the host refused the signature: is CHAT_CLUSTER_SECRET the cluster's, and is the clock within %s of the host's?)", err, cluster.MaxSkew)
		}
		return err
	}
	var body struct {
		Connections []chat.Connection `json:"connections"`
	}
	if err := json.Unmarshal(b, &body); err != nil {
		return fmt.Errorf("%s%s answered undecodable JSON: %w", baseURL, cluster.PathConnections, err)
	}
	slices.SortFunc(body.Connections, func(x, y chat.Connection) int {
		return cmp.Or(x.Since.Compare(y.Since), cmp.Compare(x.ConnID, y.ConnID))
	})
	out := connectionsOut{InternalURL: baseURL, Connections: make([]hostConnOut, 0, len(body.Connections))}
	for _, c := range body.Connections {
		out.Connections = append(out.Connections, hostConnOut{UserID: c.UserID, HostID: c.HostID, ConnID: c.ConnID, Since: c.Since.UTC()})
	}
	if a.json {
		return a.writeJSON(out)
	}
	fmt.Fprintf(a.stdout, "%s: %d connection%s\n", baseURL, len(out.Connections), plural(len(out.Connections)))
	if len(out.Connections) == 0 {
		return nil
	}
	tw := a.table()
	fmt.Fprintln(tw, "USER ID\tHOST\tCONN ID\tSINCE")
	for _, c := range out.Connections {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.UserID, c.HostID, c.ConnID, stamp(c.Since))
	}
	return tw.Flush()
}

// internalURL resolves target to an internal listener's base URL: an http(s) URL is
// taken as it is; anything else is a host id looked up in the registry in Redis.
func (a *app) internalURL(ctx context.Context, target string) (string, error) {
	if strings.HasPrefix(target, "http://") || strings.HasPrefix(target, "https://") {
		u, err := url.Parse(target)
		if err != nil || u.Host == "" {
			return "", &usageError{msg: fmt.Sprintf("%q is not a URL like http://10.0.0.5:9080", target)}
		}
		return strings.TrimRight(target, "/"), nil
	}
	if err := a.cfg.Validate(config.Requirements{Redis: true}); err != nil {
		return "", &usageError{msg: err.Error() + "; it holds the hosts registry (or pass the host's internal URL instead of its id)"}
	}
	rs, err := a.redisStore(ctx)
	if err != nil {
		return "", err
	}
	qctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	hosts, err := rs.Hosts(qctx)
	if err != nil {
		return "", err
	}
	for _, h := range hosts {
		if h.HostID != target {
			continue
		}
		if !a.alive(h, time.Now()) {
			fmt.Fprintf(a.stderr, "chatctl connections: host %s is stale (last heartbeat %s); asking anyway\n", h.HostID, stamp(h.LastHeartbeat))
		}
		if h.InternalURL == "" {
			return "", fmt.Errorf("host %s registered no internal URL", h.HostID)
		}
		return strings.TrimRight(h.InternalURL, "/"), nil
	}
	return "", &notFoundError{msg: fmt.Sprintf("no host %q in the hosts registry (see chatctl hosts)", target)}
}
