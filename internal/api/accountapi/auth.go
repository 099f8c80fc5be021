// Package accountapi serves the accounts of docs/api.md §4 and §5: first-user setup,
// logging in (rate-limited per client, docs/api.md §2.6), token refresh and logout under
// /api/v1/auth, and the users an admin manages under /api/v1/users.
package accountapi

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/kaiserhub/kaiser/internal/api"
	"github.com/kaiserhub/kaiser/internal/audit"
	"github.com/kaiserhub/kaiser/internal/auth"
	"github.com/kaiserhub/kaiser/internal/store"
)

// accounts is what the account routes need from auth.
type accounts interface {
	UserCount(ctx context.Context) (int, error)
	Setup(ctx context.Context, n auth.NewUser) (store.User, auth.Tokens, error)
	Login(ctx context.Context, login, password string, remember bool) (store.User, auth.Tokens, error)
	Refresh(ctx context.Context, refresh string) (store.User, auth.Tokens, error)
	Logout(ctx context.Context, p auth.Principal, refresh string, all bool) (int, error)
	IssueFor(u store.User) (auth.Tokens, error)
	CreateUser(ctx context.Context, n auth.NewUser) (store.User, error)
	Users(ctx context.Context) ([]store.User, error)
	User(ctx context.Context, id int64) (store.User, error)
	UpdateUser(ctx context.Context, id int64, p auth.UserPatch) (store.User, []string, error)
	DeleteUser(ctx context.Context, actor store.User, id int64) error
	SetPassword(ctx context.Context, id int64, current *string, next string) (store.User, error)
}

var _ accounts = (*auth.Service)(nil)

// recorder is where the account routes record logins and changes.
type recorder interface {
	Record(ctx context.Context, e store.AuditEntry)
}

var _ recorder = (*audit.Log)(nil)

// Deps are what the account routes need from the hub.
type Deps struct {
	Accounts accounts
	Audit    recorder
	// LoginLimit and RefreshLimit are requests per minute per client IP (10 and 60).
	LoginLimit, RefreshLimit int

	// MQTTTLS is whether the broker's MQTT TLS listener is on (GET /auth/status).
	MQTTTLS bool
	// MQTTAuthEnabled: the broker runs with --mqtt-auth devices.
	MQTTAuthEnabled bool
	// BrokerLogin is how the hub logs in to an external broker; zero with
	// the embedded one (docs/decisions/0023-external-broker.md).
	BrokerLogin BrokerLogin
}

// BrokerLogin is the hub's own login at its broker, without the password.
type BrokerLogin struct {
	Username string
	TLS      bool
}

type handlers struct {
	srv      *api.Server
	accounts accounts
	audit    recorder

	mqttTLS     bool
	mqttAuth    bool
	brokerLogin BrokerLogin
}

// Register adds the account routes to s.
func Register(s *api.Server, d Deps) {
	if d.LoginLimit <= 0 {
		d.LoginLimit = 10
	}
	if d.RefreshLimit <= 0 {
		d.RefreshLimit = 60
	}

	h := &handlers{srv: s, accounts: d.Accounts, audit: d.Audit}
	h.mqttTLS = d.MQTTTLS
	h.mqttAuth = d.MQTTAuthEnabled
	h.brokerLogin = d.BrokerLogin
	h.authRoutes(s.Group("auth"), d.LoginLimit, d.RefreshLimit)
	h.userRoutes(s.Group("users"))
}

// userResponse is the user object (docs/api.md §5).
type userResponse struct {
	ID        int64   `json:"id"`
	Username  string  `json:"username"`
	Email     string  `json:"email"`
	FullName  string  `json:"full_name"`
	Role      string  `json:"role"`
	IsActive  bool    `json:"is_active"`
	CreatedAt *string `json:"created_at"`
	UpdatedAt *string `json:"updated_at"`
}

func userJSON(u store.User) userResponse {
	return userResponse{
		ID:        u.ID,
		Username:  u.Username,
		Email:     u.Email,
		FullName:  u.FullName,
		Role:      u.Role,
		IsActive:  u.IsActive,
		CreatedAt: api.Timestamp(u.CreatedAt),
		UpdatedAt: api.Timestamp(u.UpdatedAt),
	}
}

type authStatusResponse struct {
	SetupRequired   bool `json:"setup_required"`
	UsersExist      bool `json:"users_exist"`
	MQTTAuthEnabled bool `json:"mqtt_auth_enabled"`
	MQTTTLSEnabled  bool `json:"mqtt_tls_enabled"`
}

// sessionResponse answers setup and login: the tokens and whose they are.
type sessionResponse struct {
	Success bool         `json:"success"`
	Message string       `json:"message"`
	Tokens  auth.Tokens  `json:"tokens"`
	User    userResponse `json:"user"`
}

type tokensResponse struct {
	Success bool        `json:"success"`
	Message string      `json:"message"`
	Tokens  auth.Tokens `json:"tokens"`
}

type logoutResponse struct {
	Success           bool   `json:"success"`
	Message           string `json:"message"`
	TokensInvalidated int    `json:"tokens_invalidated"`
}

type brokerAuthStatus struct {
	Success         bool    `json:"success"`
	Enabled         bool    `json:"enabled"`
	Username        *string `json:"username"`
	BrokerConnected bool    `json:"broker_connected"`
	TLSEnabled      bool    `json:"tls_enabled"`
	LastConfigured  *string `json:"last_configured"`
}

// newUserRequest is an account of the first-user setup.
type newUserRequest struct {
	Username string `json:"username" api:"required,min=3,max=50,pattern=username"`
	Email    string `json:"email" api:"required,min=3,max=100,pattern=email"`
	FullName string `json:"full_name" api:"max=100"`
	Password string `json:"password" api:"required,raw"`
}

func (q *newUserRequest) Validate(b *api.Body) { checkPassword(b, "password", q.Password) }

func (q *newUserRequest) newUser(role string) auth.NewUser {
	return auth.NewUser{
		Username: q.Username,
		Email:    q.Email,
		FullName: q.FullName,
		Password: q.Password,
		Role:     role,
	}
}

// createUserRequest is an account an admin creates, with its role.
type createUserRequest struct {
	newUserRequest
	Role string `json:"role" api:"min=1,max=20,enum=admin|operator|viewer,default=viewer"`
}

// checkPassword applies the password policy to a field that is a string.
func checkPassword(b *api.Body, name, pw string) {
	if b.Failed(name) {
		return
	}
	if unmet := auth.PasswordPolicy(pw); len(unmet) > 0 {
		b.Fail(name, "password needs "+strings.Join(unmet, ", "), "value_error")
	}
}

type loginRequest struct {
	Username   string `json:"username" api:"required,min=1,max=100"`
	Password   string `json:"password" api:"required,min=1,max=128,raw"`
	RememberMe bool   `json:"remember_me"`
}

type refreshRequest struct {
	RefreshToken string `json:"refresh_token" api:"required,min=1,max=4096"`
}

type logoutRequest struct {
	RefreshToken string `json:"refresh_token" api:"max=4096"`
	AllDevices   bool   `json:"all_devices"`
}

// authRoutes are docs/api.md §4: the login routes share one limit, refresh has its own.
func (h *handlers) authRoutes(g api.Group, loginLimit, refreshLimit int) {
	const base = "/api/v1/auth"
	login := h.srv.RateLimit("login", loginLimit)
	refresh := h.srv.RateLimit("refresh", refreshLimit)
	g.Public("GET", base+"/status", "Whether first-user setup is required", h.authStatus,
		api.Returns(authStatusResponse{}))
	g.Public("POST", base+"/setup", "Create the first (admin) account", login(h.setup),
		api.Accepts(newUserRequest{}), api.Returns(sessionResponse{}))
	g.Public("POST", base+"/login", "Log in with username or email", login(h.login),
		api.Accepts(loginRequest{}), api.Returns(sessionResponse{}))
	g.Public("POST", base+"/login/form", "Log in with form fields", login(h.loginForm),
		api.Returns(auth.Tokens{}))
	g.Public("POST", base+"/refresh", "Rotate a refresh token", refresh(h.refresh),
		api.Accepts(refreshRequest{}), api.Returns(tokensResponse{}))
	g.Add("POST", base+"/logout", auth.RoleViewer, "Log out (optionally every session)", h.logout,
		api.Accepts(logoutRequest{}), api.Returns(logoutResponse{}))
	g.Add("GET", base+"/me", auth.RoleViewer, "The current user", h.me, api.Returns(userResponse{}))
	g.Add("POST", base+"/register", auth.RoleAdmin, "Create an account (admin)", h.register,
		api.Accepts(createUserRequest{}), api.Returns(userCreated{}))
	g.Add("GET", base+"/mqtt/status", auth.RoleViewer, "The hub's broker connection", h.brokerAuth,
		api.Returns(brokerAuthStatus{}))
	g.Add("POST", base+"/mqtt/configure", auth.RoleAdmin,
		"Not provided: broker credentials are managed outside the API", h.configureBrokerAuth)
}

func (h *handlers) authStatus(w http.ResponseWriter, r *http.Request) {
	n, err := h.accounts.UserCount(r.Context())
	if err != nil {
		h.srv.Internal(w, r, err)
		return
	}
	resp := authStatusResponse{SetupRequired: n == 0, UsersExist: n > 0}
	resp.MQTTTLSEnabled = h.mqttTLS
	resp.MQTTAuthEnabled = h.mqttAuth
	api.WriteJSON(w, http.StatusOK, resp)
}

func (h *handlers) me(w http.ResponseWriter, _ *http.Request, p auth.Principal) {
	api.WriteJSON(w, http.StatusOK, userJSON(p.User))
}

func (h *handlers) brokerAuth(w http.ResponseWriter, _ *http.Request, _ auth.Principal) {
	st := brokerAuthStatus{Success: true, BrokerConnected: h.srv.BrokerConnected(), TLSEnabled: h.brokerLogin.TLS}
	if h.brokerLogin.Username != "" {
		st.Enabled, st.Username = true, &h.brokerLogin.Username
	}
	api.WriteJSON(w, http.StatusOK, st)
}

func (h *handlers) configureBrokerAuth(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	api.WriteError(w, r, http.StatusNotImplemented, "NOT_IMPLEMENTED",
		"broker credentials are managed outside the API", nil)
}

// auditUser records what a user did through r.
func (h *handlers) auditUser(r *http.Request, actor, event, msg string, details map[string]any) {
	h.audit.Record(r.Context(), api.UserEntry(r, actor, event, msg, details))
}

func (h *handlers) setup(w http.ResponseWriter, r *http.Request) {
	var req newUserRequest
	if !api.Decode(w, r, &req) {
		return
	}
	u, tokens, err := h.accounts.Setup(r.Context(), req.newUser(auth.RoleViewer))
	switch {
	case errors.Is(err, store.ErrSetupDone):
		api.WriteError(w, r, http.StatusForbidden, "SETUP_ALREADY_COMPLETED", "setup has already been completed", nil)
		return
	case err != nil:
		h.srv.Internal(w, r, err)
		return
	}
	h.auditUser(r, u.Username, "setup_completed", "first admin account created", nil)
	api.WriteJSON(w, http.StatusOK, sessionResponse{
		Success: true,
		Message: "setup completed",
		Tokens:  tokens,
		User:    userJSON(u),
	})
}

func (h *handlers) login(w http.ResponseWriter, r *http.Request) {
	var req loginRequest
	if !api.Decode(w, r, &req) {
		return
	}
	h.doLogin(w, r, req.Username, req.Password, req.RememberMe, true)
}

func (h *handlers) loginForm(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, api.MaxBody)
	if err := r.ParseForm(); err != nil {
		api.BodyError(w, r, "invalid form body", "value_error")
		return
	}

	login, password := strings.TrimSpace(r.PostForm.Get("username")), r.PostForm.Get("password")
	b := api.NewBody()
	if login == "" || len(login) > 100 {
		b.Fail("username", "must be 1-100 characters", "value_error")
	}
	if password == "" || len(password) > 128 {
		b.Fail("password", "must be 1-128 characters", "value_error")
	}
	if b.Done(w, r) {
		return
	}
	h.doLogin(w, r, login, password, false, false)
}

// doLogin checks the credentials, audits the attempt and answers the tokens,
// in the session envelope unless it is the form login.
func (h *handlers) doLogin(w http.ResponseWriter, r *http.Request, login, password string, remember, envelope bool) {
	u, tokens, err := h.accounts.Login(r.Context(), login, password, remember)
	entry := store.AuditEntry{
		SourceType:    "user",
		SourceID:      login,
		IPAddress:     api.ClientIP(r),
		UserAgent:     r.UserAgent(),
		CorrelationID: api.RequestID(r),
		Details:       map[string]any{"remember_me": remember},
	}
	switch {
	case errors.Is(err, auth.ErrInvalidCredentials), errors.Is(err, auth.ErrUserDisabled):
		reason, code, msg := "invalid_credentials", "INVALID_CREDENTIALS", "Invalid username or password"
		if errors.Is(err, auth.ErrUserDisabled) {
			reason, code, msg = "disabled", "USER_DISABLED", "User account is disabled"
		}
		entry.EventType, entry.Severity, entry.Status, entry.Message = "login_failed", "warning", "failed", "login failed"
		entry.Details["reason"] = reason
		h.audit.Record(r.Context(), entry)
		api.WriteError(w, r, http.StatusUnauthorized, code, msg, nil)
		return
	case err != nil:
		h.srv.Internal(w, r, err)
		return
	}

	entry.EventType, entry.SourceID, entry.Message = "login_success", u.Username, "login"
	h.audit.Record(r.Context(), entry)
	if !envelope {
		api.WriteJSON(w, http.StatusOK, tokens)
		return
	}
	api.WriteJSON(w, http.StatusOK, sessionResponse{
		Success: true,
		Message: "login successful",
		Tokens:  tokens,
		User:    userJSON(u),
	})
}

func (h *handlers) refresh(w http.ResponseWriter, r *http.Request) {
	var req refreshRequest
	if !api.Decode(w, r, &req) {
		return
	}
	_, tokens, err := h.accounts.Refresh(r.Context(), req.RefreshToken)
	switch {
	case errors.Is(err, auth.ErrUserDisabled):
		api.WriteError(w, r, http.StatusUnauthorized, "USER_DISABLED", "User account is disabled", nil)
	case err != nil:
		h.srv.TokenError(w, r, err)
	default:
		api.WriteJSON(w, http.StatusOK, tokensResponse{Success: true, Message: "token refreshed", Tokens: tokens})
	}
}

func (h *handlers) logout(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	var req logoutRequest
	if !api.Decode(w, r, &req) {
		return
	}
	n, err := h.accounts.Logout(r.Context(), p, req.RefreshToken, req.AllDevices)
	if err != nil {
		h.srv.Internal(w, r, err)
		return
	}
	h.auditUser(r, p.User.Username, "logout", "logout",
		map[string]any{"all_devices": req.AllDevices, "tokens_invalidated": n})
	api.WriteJSON(w, http.StatusOK, logoutResponse{Success: true, Message: "logged out", TokensInvalidated: n})
}
