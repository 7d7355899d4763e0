package redis

// Redis key families. Every key and the event channel start with Config.Prefix (empty
// in production unless Redis is shared). Values are JSON (contract section 6), never
// a language-specific encoding, so `redis-cli` and `chatctl` can read them. A user's
// keys carry the user id as a hash tag ({...}), so they sit in one Cluster slot and the
// script that writes both works there; no command or script touches keys of two slots.
//
//	key                     type     TTL                          written by
//	session:<sha256hex>     STRING   the session lifetime         CreateSession (login), DeleteSession (logout)
//	    JSON {user_id, username, created_at, expires_at}. The key holds the hex SHA-256
//	    of the token; the token itself is never stored or logged.
//	presence:{<user_id>}    HASH     none (entries of dead hosts  AddConnections (socket open, re-register),
//	                                 are removed by readers)      RemoveConnections (socket close, dead host)
//	    conn_id -> JSON {host_id, conn_id, since, instance}. instance is the host
//	    process that registered it: entries of an earlier instance are stale.
//	upgrading:{<user_id>}   ZSET     SocketClaimTTL (15 s),       ReserveSocket (an upgrade, before it is answered);
//	                                 renewed on each claim        AddConnections, RemoveConnections, ReleaseSocket
//	    conn_id -> expiry (unix ms): socket slots claimed by upgrades whose socket has
//	    not registered its presence entry yet, counted with the entries against the
//	    per-user socket limit (socket_reserve.lua). Never read by deliveries.
//	lastseen:{<user_id>}    STRING   30 days                      RemoveConnections, when the user's last entry goes
//	    JSON string: the RFC 3339 UTC time the user's last connection closed.
//	hosts                   HASH     none (PruneHosts removes     Heartbeat (every host, every second or so),
//	                                 long-dead hosts)             RemoveHost (drain), PruneHosts
//	    host_id -> JSON {host_id, internal_url, instance, started_at, last_heartbeat,
//	    hb_ms}; hb_ms is last_heartbeat in unix ms, for the heartbeat script. A host is
//	    alive while last_heartbeat is fresh.
//	handoff:<host_id>       HASH     120 s, renewed on each add   AddHandoff (a sender that could not reach the host);
//	                                                              TakeHandoffs (the host, reads and deletes)
//	    thread_id -> highest seq the host missed, decimal.
//	disconnect:<host_id>    SET      120 s, renewed on each add   AddDisconnect (a logout whose call could not reach
//	                                                              the host); TakeDisconnects (the host, reads and deletes)
//	    JSON {session_hash} or {user_id}: sockets the host must still close with 4001.
//	ratelimit:<key>         HASH     time a full refill takes     Allow, Refund (Peek only reads)
//	    {tokens: float, ts_ms: unix ms of the last refill}: a token bucket; a missing
//	    key is a full bucket. <key> is e.g. send:<user_id>, auth:<client addr>,
//	    loginfail:<username>.
//
//	channel                 kind     payload                      published by
//	presence-events         PUB/SUB  JSON {type, host_id,         AddConnections (connect), RemoveConnections
//	                                 user_id, conn_id, at}        (disconnect), Heartbeat when fresh (host_up),
//	                                                              RemoveHost and PruneHosts (host_down)
const (
	sessionFamily     = "session:"
	presenceFamily    = "presence:"
	lastSeenFamily    = "lastseen:"
	upgradingFamily   = "upgrading:"
	hostsKeyName      = "hosts"
	handoffFamily     = "handoff:"
	disconnectFamily  = "disconnect:"
	rateLimitFamily   = "ratelimit:"
	eventsChannelName = "presence-events"
)

// One key builder per family.

func (s *Store) sessionKey(hash string) string { return s.cfg.Prefix + sessionFamily + hash }

func (s *Store) presenceKey(userID string) string {
	return s.cfg.Prefix + presenceFamily + "{" + userID + "}"
}

func (s *Store) upgradingKey(userID string) string {
	return s.cfg.Prefix + upgradingFamily + "{" + userID + "}"
}

func (s *Store) lastSeenKey(userID string) string {
	return s.cfg.Prefix + lastSeenFamily + "{" + userID + "}"
}

func (s *Store) hostsKey() string { return s.cfg.Prefix + hostsKeyName }

func (s *Store) handoffKey(hostID string) string { return s.cfg.Prefix + handoffFamily + hostID }

func (s *Store) disconnectKey(hostID string) string {
	return s.cfg.Prefix + disconnectFamily + hostID
}

func (s *Store) rateLimitKey(key string) string { return s.cfg.Prefix + rateLimitFamily + key }

func (s *Store) eventsChannel() string { return s.cfg.Prefix + eventsChannelName }
