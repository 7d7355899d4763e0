package httpapi

import (
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/switchboard-chat/switchboard/pkg/chat"
)

func (a *API) createThread(c *gin.Context) {
	var req struct {
		Name    string   `json:"name"`
		Members []string `json:"members"`
	}
	if err := a.decode(c, &req); err != nil {
		_ = c.Error(err)
		return
	}
	t, err := a.svc.CreateThread(c.Request.Context(), session(c), req.Name, req.Members)
	if err != nil {
		_ = c.Error(err)
		return
	}
	c.JSON(http.StatusCreated, gin.H{"thread": t})
}

func (a *API) listThreads(c *gin.Context) {
	ts, err := a.svc.ListThreads(c.Request.Context(), session(c))
	if err != nil {
		_ = c.Error(err)
		return
	}
	if ts == nil {
		ts = []chat.Thread{}
	}
	c.JSON(http.StatusOK, gin.H{"threads": ts})
}

func (a *API) getThread(c *gin.Context) {
	t, err := a.svc.Thread(c.Request.Context(), session(c), c.Param("id"))
	if err != nil {
		_ = c.Error(err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"thread": t})
}

func (a *API) addMember(c *gin.Context) {
	var req struct {
		Username string `json:"username"`
	}
	if err := a.decode(c, &req); err != nil {
		_ = c.Error(err)
		return
	}
	t, err := a.svc.AddMember(c.Request.Context(), session(c), c.Param("id"), req.Username)
	if err != nil {
		_ = c.Error(err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"thread": t})
}

func (a *API) removeMember(c *gin.Context) {
	if err := a.svc.RemoveMember(c.Request.Context(), session(c), c.Param("id"), c.Param("user_id")); err != nil {
		_ = c.Error(err)
		return
	}
	c.Status(http.StatusNoContent)
}

// queryInt parses an optional non-negative integer query parameter.
func queryInt(c *gin.Context, name string) (int64, error) {
	v, ok := c.GetQuery(name)
	if !ok {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, chat.Errorf(chat.EInvalid, "%s must be a whole number >= 0", name)
	}
	return n, nil
}

func (a *API) listMessages(c *gin.Context) {
	var q chat.HistoryQuery
	var err error
	if q.AfterSeq, err = queryInt(c, "after_seq"); err != nil {
		_ = c.Error(err)
		return
	}
	if q.BeforeSeq, err = queryInt(c, "before_seq"); err != nil {
		_ = c.Error(err)
		return
	}
	if _, ok := c.GetQuery("before_seq"); ok && q.BeforeSeq == 0 {
		_ = c.Error(chat.Errorf(chat.EInvalid, "before_seq must be at least 1"))
		return
	}
	if v, ok := c.GetQuery("limit"); ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > chat.MaxPage {
			_ = c.Error(chat.Errorf(chat.EInvalid, "limit must be 1 to %d", chat.MaxPage))
			return
		}
		q.Limit = n
	}
	msgs, more, err := a.svc.History(c.Request.Context(), session(c), c.Param("id"), q)
	if err != nil {
		_ = c.Error(err)
		return
	}
	if msgs == nil {
		msgs = []chat.Message{}
	}
	c.JSON(http.StatusOK, gin.H{"messages": msgs, "has_more": more})
}

func (a *API) sendMessage(c *gin.Context) {
	var req struct {
		ClientMsgID string `json:"client_msg_id"`
		Body        string `json:"body"`
	}
	if err := a.decode(c, &req); err != nil {
		_ = c.Error(err)
		return
	}
	st, err := a.svc.Send(c.Request.Context(), session(c), chat.SendRequest{ThreadID: c.Param("id"), ClientMsgID: req.ClientMsgID, Body: req.Body})
	if err != nil {
		a.metrics.Sends.WithLabelValues(chat.ErrorCode(err)).Inc()
		_ = c.Error(err)
		return
	}
	status := http.StatusCreated
	if !st.Created {
		status = http.StatusOK
		a.metrics.Sends.WithLabelValues("repeat").Inc()
	} else {
		a.metrics.Sends.WithLabelValues("created").Inc()
	}
	c.JSON(status, gin.H{"message": st.Message})
	// The sender has its answer before fan-out starts: delivery never delays it.
	c.Writer.Flush()
	a.svc.Deliver(c.Request.Context(), st, "")
}

func (a *API) markRead(c *gin.Context) {
	var req struct {
		Seq *int64 `json:"seq"`
	}
	if err := a.decode(c, &req); err != nil {
		_ = c.Error(err)
		return
	}
	if req.Seq == nil {
		_ = c.Error(chat.Errorf(chat.EInvalid, "seq is required"))
		return
	}
	if err := a.svc.MarkRead(c.Request.Context(), session(c), c.Param("id"), *req.Seq); err != nil {
		_ = c.Error(err)
		return
	}
	c.Status(http.StatusNoContent)
}

func (a *API) presence(c *gin.Context) {
	ps, err := a.svc.PresenceOf(c.Request.Context(), session(c), c.QueryArray("user_id"))
	if err != nil {
		_ = c.Error(err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"presence": ps})
}
