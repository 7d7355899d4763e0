package chat

// Recipient names a user and, optionally, which of their sockets on one host get a
// delivery; no ConnIDs means every socket of the user on that host (the fallback when
// the presence table cannot be read).
type Recipient struct {
	UserID  string   `json:"user_id"`
	ConnIDs []string `json:"conn_ids"`
}

// DeliveryResult is the outcome of one delivery to one socket.
type DeliveryResult struct {
	UserID string `json:"user_id"`
	ConnID string `json:"conn_id"`
	Status string `json:"status"`
}

// Delivery statuses of the internal deliver call.
const (
	StatusDelivered    = "delivered"
	StatusNotConnected = "not_connected"
)
