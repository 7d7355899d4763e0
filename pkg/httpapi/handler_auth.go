package httpapi

import (
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/switchboard-chat/switchboard/pkg/chat"
)

type credentials struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

func (a *API) register(c *gin.Context) {
	var req credentials
	if err := a.decode(c, &req); err != nil {
		_ = c.Error(err)
		return
	}
	u, err := a.svc.Register(c.Request.Context(), ClientAddr(c.Request, a.cfg.TrustedProxies), req.Username, req.Password)
	if err != nil {
		_ = c.Error(err)
		return
	}
	c.JSON(http.StatusCreated, gin.H{"user": u})
}

func (a *API) login(c *gin.Context) {
	var req credentials
	if err := a.decode(c, &req); err != nil {
		_ = c.Error(err)
		return
	}
	res, err := a.svc.Login(c.Request.Context(), ClientAddr(c.Request, a.cfg.TrustedProxies), req.Username, req.Password)
	if err != nil {
		_ = c.Error(err)
		return
	}
	// Secure follows CHAT_COOKIE_SECURE: chatd dev and local clusters serve plain HTTP.
	http.SetCookie(c.Writer, &http.Cookie{ //nolint:gosec // HttpOnly and SameSite are always set
		Name: CookieName, Value: res.Token, Path: "/", HttpOnly: true, Secure: a.cfg.CookieSecure,
		SameSite: http.SameSiteLaxMode, MaxAge: int(res.Session.ExpiresAt.Sub(res.Session.CreatedAt) / time.Second), Expires: res.Session.ExpiresAt,
	})
	c.JSON(http.StatusOK, gin.H{"token": res.Token, "user": res.User, "expires_at": res.Session.ExpiresAt.UTC()})
}

func (a *API) logout(c *gin.Context) {
	if err := a.svc.Logout(c.Request.Context(), session(c)); err != nil {
		_ = c.Error(err)
		return
	}
	// Clears the cookie, with the same flags as login.
	http.SetCookie(c.Writer, &http.Cookie{Name: CookieName, Value: "", Path: "/", HttpOnly: true, Secure: a.cfg.CookieSecure, SameSite: http.SameSiteLaxMode, MaxAge: -1}) //nolint:gosec // Secure follows CHAT_COOKIE_SECURE
	c.Status(http.StatusNoContent)
}

func (a *API) me(c *gin.Context) {
	s := session(c)
	c.JSON(http.StatusOK, gin.H{"user": chat.User{ID: s.UserID, Username: s.Username}})
}
