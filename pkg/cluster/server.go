package cluster

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/pprof"

	"github.com/switchboard-chat/switchboard/pkg/chat"
)

// NewInternalHandler returns the internal listener's routes, every one behind the
// signature check: deliver, disconnect, connections, and pprof when enabled.
func NewInternalHandler(hub localHub, signer *Signer, enablePprof bool, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+PathDeliver, func(w http.ResponseWriter, r *http.Request) {
		data, err := requestBody(r)
		var (
			reqs  []deliverRequest
			batch bool
		)
		if err == nil {
			reqs, batch, err = decodeDeliverRequests(data)
		}
		for _, b := range reqs {
			if err == nil && (b.Message == nil) == (b.Typing == nil) {
				err = errors.New("neither or both of message and typing")
			}
		}
		if err != nil {
			// Checked before any socket is written: a bad batch delivers nothing.
			writeError(w, http.StatusBadRequest, chat.EInvalid, "want {message or typing, recipients} or {batch: [...]}")
			return
		}
		out := make([]byte, 0, 16+len(data)/2)
		if batch {
			out = append(out, `{"batch":[`...)
		}
		for i, b := range reqs {
			var res []chat.DeliveryResult
			if b.Message != nil {
				res = hub.DeliverMessage(r.Context(), b.Message, b.Recipients, "")
			} else {
				res = hub.DeliverTyping(b.Typing.ThreadID, b.Typing.UserID, b.Recipients, "")
			}
			if i > 0 {
				out = append(out, ',')
			}
			out = appendAnswer(out, res)
		}
		if batch {
			out = append(out, "]}"...)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(out)
	})
	mux.HandleFunc("POST "+PathDisconnect, func(w http.ResponseWriter, r *http.Request) {
		var b chat.Disconnect
		if err := json.NewDecoder(r.Body).Decode(&b); err != nil || (b.SessionHash == "") == (b.UserID == "") {
			writeError(w, http.StatusBadRequest, chat.EInvalid, "want {session_hash} or {user_id}")
			return
		}
		n := 0
		if b.SessionHash != "" {
			n = hub.DisconnectSession(b.SessionHash)
		} else {
			n = hub.DisconnectUser(b.UserID)
		}
		writeJSON(w, http.StatusOK, map[string]int{"closed": n})
	})
	mux.HandleFunc("GET "+PathConnections, func(w http.ResponseWriter, r *http.Request) {
		conns := hub.Connections()
		if conns == nil {
			conns = []chat.Connection{}
		}
		writeJSON(w, http.StatusOK, map[string]any{"connections": conns})
	})
	if enablePprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	}
	signed := signer.Middleware(mux)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Unknown routes answer in the contract's error shape, but only after the
		// signature check, so an unsigned caller learns nothing about the routes.
		signed.ServeHTTP(&notFoundWriter{ResponseWriter: w}, r)
	})
}

// notFoundWriter rewrites the mux's plain-text 404/405 into the JSON error shape.
type notFoundWriter struct {
	http.ResponseWriter
	wrote bool
	skip  bool
}

func (w *notFoundWriter) WriteHeader(status int) {
	if !w.wrote && (status == http.StatusNotFound || status == http.StatusMethodNotAllowed) && w.Header().Get("Content-Type") != "application/json" {
		w.wrote, w.skip = true, true
		code := chat.ENotFound
		if status == http.StatusMethodNotAllowed {
			code = chat.EMethodNotAllowed
		}
		writeError(w.ResponseWriter, status, code, http.StatusText(status))
		return
	}
	w.wrote = true
	w.ResponseWriter.WriteHeader(status)
}

func (w *notFoundWriter) Write(b []byte) (int, error) {
	if w.skip {
		return len(b), nil
	}
	if !w.wrote {
		w.wrote = true
	}
	return w.ResponseWriter.Write(b)
}

func (w *notFoundWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]string{"code": code, "message": msg}})
}
