package api

import (
	"errors"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kaiserhub/kaiser/internal/auth"
	"github.com/kaiserhub/kaiser/internal/store"
)

var (
	usernamePattern = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9_-]*$`)
	emailPattern    = regexp.MustCompile(`^[^@\s]+@[^@\s]+\.[^@\s]+$`)
	roles           = []string{auth.RoleAdmin, auth.RoleOperator, auth.RoleViewer}
)

func userJSON(u store.User) map[string]any {
	return map[string]any{"id": u.ID, "username": u.Username, "email": u.Email, "full_name": u.FullName,
		"role": u.Role, "is_active": u.IsActive, "created_at": tsv(u.CreatedAt), "updated_at": tsv(u.UpdatedAt)}
}

func (s *Server) authRoutes() {
	login := s.limited(s.loginLim, "login")
	s.public("GET", "/api/v1/auth/status", "Whether first-user setup is required", "auth", s.authStatus)
	s.public("POST", "/api/v1/auth/setup", "Create the first (admin) account", "auth", login(s.setup))
	s.public("POST", "/api/v1/auth/login", "Log in with username or email", "auth", login(s.login))
	s.public("POST", "/api/v1/auth/login/form", "Log in with form fields", "auth", login(s.loginForm))
	s.public("POST", "/api/v1/auth/refresh", "Rotate a refresh token", "auth", s.limited(s.refreshLim, "refresh")(s.refresh))
	s.protected("POST", "/api/v1/auth/logout", auth.RoleViewer, "Log out (optionally every session)", "auth", s.logout)
	s.protected("GET", "/api/v1/auth/me", auth.RoleViewer, "The current user", "auth", func(w http.ResponseWriter, _ *http.Request, p auth.Principal) {
		WriteJSON(w, http.StatusOK, userJSON(p.User))
	})
	s.protected("POST", "/api/v1/auth/register", auth.RoleAdmin, "Create an account (admin)", "auth", s.register)
	s.protected("GET", "/api/v1/auth/mqtt/status", auth.RoleViewer, "The hub's broker connection", "auth", func(w http.ResponseWriter, _ *http.Request, _ auth.Principal) {
		WriteJSON(w, http.StatusOK, map[string]any{"success": true, "enabled": false, "username": nil,
			"broker_connected": s.deps.Broker != nil && s.deps.Broker.Connected(), "tls_enabled": false, "last_configured": nil})
	})
	s.protected("POST", "/api/v1/auth/mqtt/configure", auth.RoleAdmin, "Not provided: broker credentials are managed outside the API", "auth",
		func(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
			WriteError(w, r, http.StatusNotImplemented, "NOT_IMPLEMENTED", "broker credentials are managed outside the API", nil)
		})
}

// limited applies a per-IP sliding-window limit; over it the reply is 429
// with Retry-After, audited at most once per key per window.
func (s *Server) limited(l *auth.Limiter, name string) func(http.HandlerFunc) http.HandlerFunc {
	var mu sync.Mutex
	audited := map[string]time.Time{}
	return func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			ip := clientIP(r)
			ok, remaining, retry := l.Allow(ip)
			w.Header().Set("X-RateLimit-Remaining", strconv.Itoa(remaining))
			if ok {
				h(w, r)
				return
			}
			secs := int(retry/time.Second) + 1
			w.Header().Set("Retry-After", strconv.Itoa(secs))
			w.Header().Set("X-RateLimit-Reset", strconv.FormatInt(time.Now().Add(retry).Unix(), 10))
			mu.Lock()
			first := time.Since(audited[ip]) > time.Minute
			if first {
				audited[ip] = time.Now()
			}
			mu.Unlock()
			if first {
				s.audit.Record(r.Context(), store.AuditEntry{EventType: "rate_limit_exceeded", Severity: "warning", SourceType: "api",
					SourceID: ip, Status: "failed", Message: "rate limit exceeded on " + name, Details: map[string]any{"route": r.URL.Path},
					IPAddress: ip, CorrelationID: RequestID(r)})
			}
			WriteError(w, r, http.StatusTooManyRequests, "RATE_LIMITED", "too many requests; retry after "+strconv.Itoa(secs)+" s", nil)
		}
	}
}

func (s *Server) authStatus(w http.ResponseWriter, r *http.Request) {
	n, err := s.auth.UserCount(r.Context())
	if err != nil {
		s.internal(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, map[string]any{"setup_required": n == 0, "users_exist": n > 0,
		"mqtt_auth_enabled": false, "mqtt_tls_enabled": false})
}

// readNewUser validates the account fields shared by setup, register and create.
func readNewUser(b *body, withRole bool) auth.NewUser {
	var n auth.NewUser
	n.Username, _ = b.str("username", true, 3, 50, usernamePattern)
	n.Email, _ = b.str("email", true, 3, 100, emailPattern)
	n.FullName, _ = b.str("full_name", false, 0, 100, nil)
	if pw, ok := b.m["password"].(string); ok {
		if unmet := auth.PasswordPolicy(pw); len(unmet) > 0 {
			b.fail("password", "password needs "+strings.Join(unmet, ", "), "value_error")
		}
		n.Password = pw
	} else if _, present := b.m["password"]; present {
		b.fail("password", "must be a string", "type_error")
	} else {
		b.fail("password", "field required", "missing")
	}
	n.Role = auth.RoleViewer
	if withRole {
		if r, ok := b.str("role", false, 1, 20, nil); ok {
			if auth.RoleRank(r) == 0 {
				b.fail("role", "must be one of admin, operator, viewer", "enum")
			}
			n.Role = r
		}
	}
	return n
}

func (s *Server) setup(w http.ResponseWriter, r *http.Request) {
	b, ok := readBody(w, r)
	if !ok {
		return
	}
	n := readNewUser(b, false)
	if b.done(w, r) {
		return
	}
	u, tokens, err := s.auth.Setup(r.Context(), n)
	switch {
	case errors.Is(err, store.ErrSetupDone):
		WriteError(w, r, http.StatusForbidden, "SETUP_ALREADY_COMPLETED", "setup has already been completed", nil)
		return
	case err != nil:
		s.internal(w, r, err)
		return
	}
	s.audit.Record(r.Context(), store.AuditEntry{EventType: "setup_completed", SourceType: "user", SourceID: u.Username,
		Message: "first admin account created", IPAddress: clientIP(r), CorrelationID: RequestID(r)})
	WriteJSON(w, http.StatusOK, map[string]any{"success": true, "message": "setup completed", "tokens": tokens, "user": userJSON(u)})
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	b, ok := readBody(w, r)
	if !ok {
		return
	}
	login, _ := b.str("username", true, 1, 100, nil)
	password := ""
	if pw, ok := b.m["password"].(string); ok && len(pw) >= 1 && len(pw) <= 128 {
		password = pw
	} else {
		b.fail("password", "must be a string of 1-128 characters", "value_error")
	}
	remember := b.boolean("remember_me", false)
	if b.done(w, r) {
		return
	}
	s.doLogin(w, r, login, password, remember, true)
}

func (s *Server) loginForm(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, MaxBody)
	if err := r.ParseForm(); err != nil {
		writeValidation(w, r, []fieldError{{Loc: []any{"body"}, Msg: "invalid form body", Type: "value_error"}})
		return
	}
	login, password := strings.TrimSpace(r.PostForm.Get("username")), r.PostForm.Get("password")
	var errs []fieldError
	if login == "" || len(login) > 100 {
		errs = append(errs, fieldError{Loc: []any{"body", "username"}, Msg: "must be 1-100 characters", Type: "value_error"})
	}
	if password == "" || len(password) > 128 {
		errs = append(errs, fieldError{Loc: []any{"body", "password"}, Msg: "must be 1-128 characters", Type: "value_error"})
	}
	if len(errs) > 0 {
		writeValidation(w, r, errs)
		return
	}
	s.doLogin(w, r, login, password, false, false)
}

func (s *Server) doLogin(w http.ResponseWriter, r *http.Request, login, password string, remember, envelope bool) {
	u, tokens, err := s.auth.Login(r.Context(), login, password, remember)
	entry := store.AuditEntry{SourceType: "user", SourceID: login, IPAddress: clientIP(r), UserAgent: r.UserAgent(),
		CorrelationID: RequestID(r), Details: map[string]any{"remember_me": remember}}
	switch {
	case errors.Is(err, auth.ErrInvalidCredentials), errors.Is(err, auth.ErrUserDisabled):
		reason, code, msg := "invalid_credentials", "INVALID_CREDENTIALS", "Invalid username or password"
		if errors.Is(err, auth.ErrUserDisabled) {
			reason, code, msg = "disabled", "USER_DISABLED", "User account is disabled"
		}
		entry.EventType, entry.Severity, entry.Status, entry.Message = "login_failed", "warning", "failed", "login failed"
		entry.Details["reason"] = reason
		s.audit.Record(r.Context(), entry)
		WriteError(w, r, http.StatusUnauthorized, code, msg, nil)
		return
	case err != nil:
		s.internal(w, r, err)
		return
	}
	entry.EventType, entry.SourceID, entry.Message = "login_success", u.Username, "login"
	s.audit.Record(r.Context(), entry)
	if !envelope {
		WriteJSON(w, http.StatusOK, tokens)
		return
	}
	WriteJSON(w, http.StatusOK, map[string]any{"success": true, "message": "login successful", "tokens": tokens, "user": userJSON(u)})
}

func (s *Server) refresh(w http.ResponseWriter, r *http.Request) {
	b, ok := readBody(w, r)
	if !ok {
		return
	}
	tok, _ := b.str("refresh_token", true, 1, 4096, nil)
	if b.done(w, r) {
		return
	}
	_, tokens, err := s.auth.Refresh(r.Context(), tok)
	if err != nil {
		if errors.Is(err, auth.ErrUserDisabled) {
			WriteError(w, r, http.StatusUnauthorized, "USER_DISABLED", "User account is disabled", nil)
			return
		}
		s.authError(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, map[string]any{"success": true, "message": "token refreshed", "tokens": tokens})
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	b, ok := readBody(w, r)
	if !ok {
		return
	}
	refresh, _ := b.str("refresh_token", false, 0, 4096, nil)
	all := b.boolean("all_devices", false)
	if b.done(w, r) {
		return
	}
	n, err := s.auth.Logout(r.Context(), p, refresh, all)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	s.audit.Record(r.Context(), store.AuditEntry{EventType: "logout", SourceType: "user", SourceID: p.User.Username,
		Message: "logout", Details: map[string]any{"all_devices": all, "tokens_invalidated": n}, IPAddress: clientIP(r), CorrelationID: RequestID(r)})
	WriteJSON(w, http.StatusOK, map[string]any{"success": true, "message": "logged out", "tokens_invalidated": n})
}

func (s *Server) register(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	u, ok := s.createUser(w, r, p)
	if ok {
		WriteJSON(w, http.StatusOK, map[string]any{"success": true, "message": "user created", "user": userJSON(u)})
	}
}

func (s *Server) createUser(w http.ResponseWriter, r *http.Request, p auth.Principal) (store.User, bool) {
	b, ok := readBody(w, r)
	if !ok {
		return store.User{}, false
	}
	n := readNewUser(b, true)
	if b.done(w, r) {
		return store.User{}, false
	}
	u, err := s.auth.CreateUser(r.Context(), n)
	switch {
	case errors.Is(err, store.ErrDuplicate):
		WriteError(w, r, http.StatusConflict, "DUPLICATE", "username or email already exists", nil)
		return u, false
	case err != nil:
		s.internal(w, r, err)
		return u, false
	}
	s.audit.Record(r.Context(), store.AuditEntry{EventType: "user_created", SourceType: "user", SourceID: p.User.Username,
		Message: "user created", Details: map[string]any{"target_user_id": u.ID, "role": u.Role}, IPAddress: clientIP(r), CorrelationID: RequestID(r)})
	return u, true
}

func (s *Server) userRoutes() {
	s.protected("GET", "/api/v1/users", auth.RoleAdmin, "List users", "users", func(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
		us, err := s.auth.Users(r.Context())
		if err != nil {
			s.internal(w, r, err)
			return
		}
		out := make([]map[string]any, 0, len(us))
		for _, u := range us {
			out = append(out, userJSON(u))
		}
		WriteJSON(w, http.StatusOK, map[string]any{"success": true, "users": out, "total": len(out)})
	})
	s.protected("POST", "/api/v1/users", auth.RoleAdmin, "Create a user", "users", func(w http.ResponseWriter, r *http.Request, p auth.Principal) {
		if u, ok := s.createUser(w, r, p); ok {
			WriteJSON(w, http.StatusCreated, userJSON(u))
		}
	})
	s.protected("GET", "/api/v1/users/{user_id}", auth.RoleAdmin, "Get a user", "users", func(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
		if u, ok := s.userFromPath(w, r); ok {
			WriteJSON(w, http.StatusOK, userJSON(u))
		}
	})
	s.protected("PATCH", "/api/v1/users/{user_id}", auth.RoleAdmin, "Update a user", "users", s.patchUser)
	s.protected("DELETE", "/api/v1/users/{user_id}", auth.RoleAdmin, "Delete a user", "users", s.deleteUser)
	s.protected("POST", "/api/v1/users/{user_id}/reset-password", auth.RoleAdmin, "Set a user's password", "users", s.resetPassword)
	s.protected("PATCH", "/api/v1/users/me/password", auth.RoleViewer, "Change the own password", "users", s.changePassword)
}

func (s *Server) userFromPath(w http.ResponseWriter, r *http.Request) (store.User, bool) {
	id, err := strconv.ParseInt(r.PathValue("user_id"), 10, 64)
	if err != nil {
		pathError(w, r, "user_id", "must be an integer")
		return store.User{}, false
	}
	u, err := s.auth.User(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		WriteError(w, r, http.StatusNotFound, "USER_NOT_FOUND", "user "+strconv.FormatInt(id, 10)+" not found", nil)
		return u, false
	}
	if err != nil {
		s.internal(w, r, err)
		return u, false
	}
	return u, true
}

func (s *Server) userChangeError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, store.ErrLastAdmin):
		WriteError(w, r, http.StatusConflict, "LAST_ADMIN", "the change would leave no active admin", nil)
	case errors.Is(err, store.ErrDuplicate):
		WriteError(w, r, http.StatusConflict, "DUPLICATE", "email already exists", nil)
	case errors.Is(err, store.ErrNotFound):
		WriteError(w, r, http.StatusNotFound, "USER_NOT_FOUND", "user not found", nil)
	case errors.Is(err, auth.ErrCannotDeleteSelf):
		WriteError(w, r, http.StatusBadRequest, "CANNOT_DELETE_SELF", "an admin cannot delete their own account", nil)
	case errors.Is(err, auth.ErrInvalidCurrentPwd):
		WriteError(w, r, http.StatusBadRequest, "INVALID_CURRENT_PASSWORD", "current password is wrong", nil)
	default:
		s.internal(w, r, err)
	}
}

func (s *Server) patchUser(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	b, ok := readBody(w, r)
	if !ok {
		return
	}
	patch := auth.UserPatch{Email: b.optStr("email", 3, 100, emailPattern), FullName: b.optStr("full_name", 0, 100, nil),
		Role: b.optStr("role", 1, 20, nil)}
	if patch.Role != nil && auth.RoleRank(*patch.Role) == 0 {
		b.fail("role", "must be one of admin, operator, viewer", "enum")
	}
	if b.has("is_active") {
		v := b.boolean("is_active", true)
		patch.IsActive = &v
	}
	if b.done(w, r) {
		return
	}
	u, ok := s.userFromPath(w, r)
	if !ok {
		return
	}
	u, changed, err := s.auth.UpdateUser(r.Context(), u.ID, patch)
	if err != nil {
		s.userChangeError(w, r, err)
		return
	}
	if len(changed) > 0 {
		s.audit.Record(r.Context(), store.AuditEntry{EventType: "user_updated", SourceType: "user", SourceID: p.User.Username,
			Message: "user updated", Details: map[string]any{"target_user_id": u.ID, "changed_fields": changed}, IPAddress: clientIP(r), CorrelationID: RequestID(r)})
	}
	WriteJSON(w, http.StatusOK, userJSON(u))
}

func (s *Server) deleteUser(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	u, ok := s.userFromPath(w, r)
	if !ok {
		return
	}
	if err := s.auth.DeleteUser(r.Context(), p.User, u.ID); err != nil {
		s.userChangeError(w, r, err)
		return
	}
	s.audit.Record(r.Context(), store.AuditEntry{EventType: "user_deleted", SourceType: "user", SourceID: p.User.Username,
		Message: "user deleted", Details: map[string]any{"target_user_id": u.ID}, IPAddress: clientIP(r), CorrelationID: RequestID(r)})
	w.WriteHeader(http.StatusNoContent)
}

func readNewPassword(b *body, name string) string {
	pw, ok := b.m[name].(string)
	if !ok {
		b.fail(name, "field required", "missing")
		return ""
	}
	if unmet := auth.PasswordPolicy(pw); len(unmet) > 0 {
		b.fail(name, "password needs "+strings.Join(unmet, ", "), "value_error")
	}
	return pw
}

func (s *Server) resetPassword(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	b, ok := readBody(w, r)
	if !ok {
		return
	}
	pw := readNewPassword(b, "new_password")
	if b.done(w, r) {
		return
	}
	u, ok := s.userFromPath(w, r)
	if !ok {
		return
	}
	if _, err := s.auth.SetPassword(r.Context(), u.ID, nil, pw); err != nil {
		s.userChangeError(w, r, err)
		return
	}
	s.audit.Record(r.Context(), store.AuditEntry{EventType: "password_reset", SourceType: "user", SourceID: p.User.Username,
		Message: "password reset", Details: map[string]any{"target_user_id": u.ID}, IPAddress: clientIP(r), CorrelationID: RequestID(r)})
	WriteJSON(w, http.StatusOK, map[string]any{"success": true, "message": "password reset"})
}

func (s *Server) changePassword(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	b, ok := readBody(w, r)
	if !ok {
		return
	}
	cur, _ := b.str("current_password", true, 1, 128, nil)
	pw := readNewPassword(b, "new_password")
	if b.done(w, r) {
		return
	}
	u, err := s.auth.SetPassword(r.Context(), p.User.ID, &cur, pw)
	if err != nil {
		s.userChangeError(w, r, err)
		return
	}
	tokens, err := s.auth.IssueFor(u)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	s.audit.Record(r.Context(), store.AuditEntry{EventType: "password_changed", SourceType: "user", SourceID: p.User.Username,
		Message: "password changed", Details: map[string]any{"target_user_id": u.ID}, IPAddress: clientIP(r), CorrelationID: RequestID(r)})
	WriteJSON(w, http.StatusOK, map[string]any{"success": true, "message": "password changed", "tokens": tokens})
}
