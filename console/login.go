package console

import (
	"errors"
	"net/http"
	"strings"

	"connectrpc.com/connect"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// loginMessages are the notes the login page shows for its ?m= codes (never text from the URL).
var loginMessages = map[string]string{
	"login":   "Log in with an API token to use the console.",
	"expired": "Your session expired. Log in again.",
	"refused": "The API no longer accepts the token of this session. Log in again.",
	"out":     "You are logged out.",
}

type loginView struct {
	Message string
	// Error is set when a login attempt failed.
	Error string
}

func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	if _, ok := c.session(r); ok {
		http.Redirect(w, r, "/ui/cluster", http.StatusSeeOther)
		return
	}
	msg, ok := loginMessages[r.URL.Query().Get("m")]
	if !ok {
		msg = loginMessages["login"]
	}
	c.render(w, http.StatusOK, "login", layout{Title: "Log in", Data: loginView{Message: msg}})
}

// login checks the token with one cheap authorized call (ClusterService.Status, read scope)
// and starts a session holding it. The token is never sent back to the browser.
func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := checkSameOrigin(r); err != nil {
		c.forbidden(w, r, err.Error())
		return
	}
	if err := r.ParseForm(); err != nil {
		c.loginFailed(w, http.StatusBadRequest, "The form could not be read: "+err.Error())
		return
	}
	token := strings.TrimSpace(r.PostForm.Get("token"))
	switch {
	case token == "":
		c.loginFailed(w, http.StatusBadRequest, "Enter an API token.")
		return
	case len(token) > maxTokenLen:
		c.loginFailed(w, http.StatusBadRequest, "That token is longer than any the API accepts.")
		return
	}
	ctx := withPeer(withToken(r.Context(), token), r.RemoteAddr)
	if _, err := c.api.cluster.Status(ctx, connect.NewRequest(&bankdv1.StatusRequest{})); err != nil {
		if connect.CodeOf(err) == connect.CodeUnauthenticated {
			c.log.Warn("console login refused", "peer", r.RemoteAddr)
			c.loginFailed(w, http.StatusUnauthorized, "That token is not accepted by this node.")
			return
		}
		c.loginFailed(w, http.StatusBadGateway, "The node could not check the token. "+describeAPIError(err))
		return
	}
	if old, ok := c.session(r); ok {
		c.sessions.end(old)
	}
	id, _, err := c.sessions.create(token)
	if err != nil {
		status := http.StatusInternalServerError
		if errors.Is(err, errTooManySessions) {
			status = http.StatusServiceUnavailable
		}
		c.loginFailed(w, status, "No session could be started: "+err.Error())
		return
	}
	c.log.Info("console login", "peer", r.RemoteAddr)
	http.SetCookie(w, sessionCookie(r, id))
	http.Redirect(w, r, "/ui/cluster", http.StatusSeeOther)
}

func (c *Console) loginFailed(w http.ResponseWriter, status int, msg string) {
	c.render(w, status, "login", layout{Title: "Log in", Data: loginView{Error: msg}})
}

func (c *Console) logout(q *request) {
	c.sessions.end(q.sess)
	c.log.Info("console logout", "peer", q.r.RemoteAddr)
	http.SetCookie(q.w, expiredCookie(q.r))
	http.Redirect(q.w, q.r, "/ui/login?m=out", http.StatusSeeOther)
}
