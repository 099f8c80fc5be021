package api

import (
	"context"
	"errors"
	"net/http"
	"regexp"
	"strings"

	"github.com/kaiserhub/kaiser/internal/auth"
	"github.com/kaiserhub/kaiser/internal/store"
)

// authService is what the HTTP layer needs from accounts and tokens.
type authService interface {
	Authenticate(ctx context.Context, token string) (auth.Principal, error)
	OnRevoke(f func(userID int64, jti string))
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

var _ authService = (*auth.Service)(nil)

var (
	usernamePattern = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9_-]*$`)
	emailPattern    = regexp.MustCompile(`^[^@\s]+@[^@\s]+\.[^@\s]+$`)
)

// userResponse is the user object (API §3).
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
		CreatedAt: Timestamp(u.CreatedAt),
		UpdatedAt: Timestamp(u.UpdatedAt),
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

func (q *newUserRequest) Validate(b *Body) { checkPassword(b, "password", q.Password) }

func (q *newUserRequest) newUser(role string) auth.NewUser {
	return auth.NewUser{Username: q.Username, Email: q.Email, FullName: q.FullName, Password: q.Password, Role: role}
}

// createUserRequest is an account an admin creates, with its role.
type createUserRequest struct {
	newUserRequest
	Role string `json:"role" api:"min=1,max=20,enum=admin|operator|viewer,default=viewer"`
}

// checkPassword applies the password policy to a field that is a string.
func checkPassword(b *Body, name, pw string) {
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

func (s *Server) authRoutes() {
	const base = "/api/v1/auth"
	login := s.RateLimit("login", s.deps.LoginLimit)
	s.public("GET", base+"/status", "Whether first-user setup is required", "auth", s.authStatus,
		returns(authStatusResponse{}))
	s.public("POST", base+"/setup", "Create the first (admin) account", "auth", login(s.setup),
		accepts(newUserRequest{}), returns(sessionResponse{}))
	s.public("POST", base+"/login", "Log in with username or email", "auth", login(s.login),
		accepts(loginRequest{}), returns(sessionResponse{}))
	s.public("POST", base+"/login/form", "Log in with form fields", "auth", login(s.loginForm),
		returns(auth.Tokens{}))
	s.public("POST", base+"/refresh", "Rotate a refresh token", "auth", s.RateLimit("refresh", s.deps.RefreshLimit)(s.refresh),
		accepts(refreshRequest{}), returns(tokensResponse{}))
	s.protected("POST", base+"/logout", auth.RoleViewer, "Log out (optionally every session)", "auth", s.logout,
		accepts(logoutRequest{}), returns(logoutResponse{}))
	s.protected("GET", base+"/me", auth.RoleViewer, "The current user", "auth", s.me, returns(userResponse{}))
	s.protected("POST", base+"/register", auth.RoleAdmin, "Create an account (admin)", "auth", s.register,
		accepts(createUserRequest{}), returns(userCreated{}))
	s.protected("GET", base+"/mqtt/status", auth.RoleViewer, "The hub's broker connection", "auth", s.brokerAuth,
		returns(brokerAuthStatus{}))
	s.protected("POST", base+"/mqtt/configure", auth.RoleAdmin,
		"Not provided: broker credentials are managed outside the API", "auth", s.configureBrokerAuth)
}

func (s *Server) authStatus(w http.ResponseWriter, r *http.Request) {
	n, err := s.auth.UserCount(r.Context())
	if err != nil {
		s.Internal(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, authStatusResponse{SetupRequired: n == 0, UsersExist: n > 0})
}

func (s *Server) me(w http.ResponseWriter, _ *http.Request, p auth.Principal) {
	WriteJSON(w, http.StatusOK, userJSON(p.User))
}

func (s *Server) brokerAuth(w http.ResponseWriter, _ *http.Request, _ auth.Principal) {
	WriteJSON(w, http.StatusOK, brokerAuthStatus{Success: true, BrokerConnected: s.BrokerConnected()})
}

func (s *Server) configureBrokerAuth(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	WriteError(w, r, http.StatusNotImplemented, "NOT_IMPLEMENTED", "broker credentials are managed outside the API", nil)
}

// auditUser records what a user did, from the request's client.
func (s *Server) auditUser(r *http.Request, actor, event, msg string, details map[string]any) {
	s.audit.Record(r.Context(), store.AuditEntry{
		EventType:     event,
		SourceType:    "user",
		SourceID:      actor,
		Message:       msg,
		Details:       details,
		IPAddress:     ClientIP(r),
		CorrelationID: RequestID(r),
	})
}

func (s *Server) setup(w http.ResponseWriter, r *http.Request) {
	var req newUserRequest
	if !Decode(w, r, &req) {
		return
	}
	u, tokens, err := s.auth.Setup(r.Context(), req.newUser(auth.RoleViewer))
	switch {
	case errors.Is(err, store.ErrSetupDone):
		WriteError(w, r, http.StatusForbidden, "SETUP_ALREADY_COMPLETED", "setup has already been completed", nil)
		return
	case err != nil:
		s.Internal(w, r, err)
		return
	}
	s.auditUser(r, u.Username, "setup_completed", "first admin account created", nil)
	WriteJSON(w, http.StatusOK, sessionResponse{
		Success: true,
		Message: "setup completed",
		Tokens:  tokens,
		User:    userJSON(u),
	})
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	var req loginRequest
	if !Decode(w, r, &req) {
		return
	}
	s.doLogin(w, r, req.Username, req.Password, req.RememberMe, true)
}

func (s *Server) loginForm(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, MaxBody)
	if err := r.ParseForm(); err != nil {
		BodyError(w, r, "invalid form body", "value_error")
		return
	}

	login, password := strings.TrimSpace(r.PostForm.Get("username")), r.PostForm.Get("password")
	b := NewBody()
	if login == "" || len(login) > 100 {
		b.Fail("username", "must be 1-100 characters", "value_error")
	}
	if password == "" || len(password) > 128 {
		b.Fail("password", "must be 1-128 characters", "value_error")
	}
	if b.Done(w, r) {
		return
	}
	s.doLogin(w, r, login, password, false, false)
}

// doLogin checks the credentials, audits the attempt and answers the tokens,
// in the session envelope unless it is the form login.
func (s *Server) doLogin(w http.ResponseWriter, r *http.Request, login, password string, remember, envelope bool) {
	u, tokens, err := s.auth.Login(r.Context(), login, password, remember)
	entry := store.AuditEntry{
		SourceType:    "user",
		SourceID:      login,
		IPAddress:     ClientIP(r),
		UserAgent:     r.UserAgent(),
		CorrelationID: RequestID(r),
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
		s.audit.Record(r.Context(), entry)
		WriteError(w, r, http.StatusUnauthorized, code, msg, nil)
		return
	case err != nil:
		s.Internal(w, r, err)
		return
	}

	entry.EventType, entry.SourceID, entry.Message = "login_success", u.Username, "login"
	s.audit.Record(r.Context(), entry)
	if !envelope {
		WriteJSON(w, http.StatusOK, tokens)
		return
	}
	WriteJSON(w, http.StatusOK, sessionResponse{
		Success: true,
		Message: "login successful",
		Tokens:  tokens,
		User:    userJSON(u),
	})
}

func (s *Server) refresh(w http.ResponseWriter, r *http.Request) {
	var req refreshRequest
	if !Decode(w, r, &req) {
		return
	}
	_, tokens, err := s.auth.Refresh(r.Context(), req.RefreshToken)
	switch {
	case errors.Is(err, auth.ErrUserDisabled):
		WriteError(w, r, http.StatusUnauthorized, "USER_DISABLED", "User account is disabled", nil)
	case err != nil:
		s.TokenError(w, r, err)
	default:
		WriteJSON(w, http.StatusOK, tokensResponse{Success: true, Message: "token refreshed", Tokens: tokens})
	}
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	var req logoutRequest
	if !Decode(w, r, &req) {
		return
	}
	n, err := s.auth.Logout(r.Context(), p, req.RefreshToken, req.AllDevices)
	if err != nil {
		s.Internal(w, r, err)
		return
	}
	s.auditUser(r, p.User.Username, "logout", "logout",
		map[string]any{"all_devices": req.AllDevices, "tokens_invalidated": n})
	WriteJSON(w, http.StatusOK, logoutResponse{Success: true, Message: "logged out", TokensInvalidated: n})
}
