package api

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/kaiserhub/kaiser/internal/auth"
	"github.com/kaiserhub/kaiser/internal/store"
)

type userCreated struct {
	Success bool         `json:"success"`
	Message string       `json:"message"`
	User    userResponse `json:"user"`
}

type userList struct {
	Success bool           `json:"success"`
	Users   []userResponse `json:"users"`
	Total   int            `json:"total"`
}

type messageResponse struct {
	Success bool   `json:"success"`
	Message string `json:"message"`
}

// patchUserRequest changes only what it names (API §1.2 partial updates).
type patchUserRequest struct {
	Email    *string     `json:"email" api:"min=3,max=100,pattern=email"`
	FullName *string     `json:"full_name" api:"max=100"`
	Role     *string     `json:"role" api:"min=1,max=20,enum=admin|operator|viewer"`
	IsActive Field[bool] `json:"is_active"`
}

func (q *patchUserRequest) patch() auth.UserPatch {
	p := auth.UserPatch{Email: q.Email, FullName: q.FullName, Role: q.Role}
	if q.IsActive.Present {
		// An explicit null restores the default: active.
		v := q.IsActive.Or(true)
		p.IsActive = &v
	}
	return p
}

type resetPasswordRequest struct {
	NewPassword string `json:"new_password" api:"required,raw"`
}

func (q *resetPasswordRequest) Validate(b *Body) { checkPassword(b, "new_password", q.NewPassword) }

type changePasswordRequest struct {
	CurrentPassword string `json:"current_password" api:"required,min=1,max=128"`
	NewPassword     string `json:"new_password" api:"required,raw"`
}

func (q *changePasswordRequest) Validate(b *Body) { checkPassword(b, "new_password", q.NewPassword) }

func (s *Server) userRoutes() {
	const (
		list  = "/api/v1/users"
		one   = list + "/{user_id}"
		admin = auth.RoleAdmin
	)
	s.protected("GET", list, admin, "List users", "users", s.listUsers, returns(userList{}))
	s.protected("POST", list, admin, "Create a user", "users", s.postUser,
		accepts(createUserRequest{}), returns(userResponse{}))
	s.protected("GET", one, admin, "Get a user", "users", s.getUser, returns(userResponse{}))
	s.protected("PATCH", one, admin, "Update a user", "users", s.patchUser,
		accepts(patchUserRequest{}), returns(userResponse{}))
	s.protected("DELETE", one, admin, "Delete a user", "users", s.deleteUser)
	s.protected("POST", one+"/reset-password", admin, "Set a user's password", "users", s.resetPassword,
		accepts(resetPasswordRequest{}), returns(messageResponse{}))
	s.protected("PATCH", list+"/me/password", auth.RoleViewer, "Change the own password", "users", s.changePassword,
		accepts(changePasswordRequest{}), returns(tokensResponse{}))
}

func (s *Server) listUsers(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	us, err := s.auth.Users(r.Context())
	if err != nil {
		s.Internal(w, r, err)
		return
	}
	out := make([]userResponse, 0, len(us))
	for _, u := range us {
		out = append(out, userJSON(u))
	}
	WriteJSON(w, http.StatusOK, userList{Success: true, Users: out, Total: len(out)})
}

func (s *Server) register(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	if u, ok := s.createUser(w, r, p); ok {
		WriteJSON(w, http.StatusOK, userCreated{Success: true, Message: "user created", User: userJSON(u)})
	}
}

func (s *Server) postUser(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	if u, ok := s.createUser(w, r, p); ok {
		WriteJSON(w, http.StatusCreated, userJSON(u))
	}
}

func (s *Server) createUser(w http.ResponseWriter, r *http.Request, p auth.Principal) (store.User, bool) {
	var req createUserRequest
	if !Decode(w, r, &req) {
		return store.User{}, false
	}
	u, err := s.auth.CreateUser(r.Context(), req.newUser(req.Role))
	switch {
	case errors.Is(err, store.ErrDuplicate):
		WriteError(w, r, http.StatusConflict, "DUPLICATE", "username or email already exists", nil)
		return u, false
	case err != nil:
		s.Internal(w, r, err)
		return u, false
	}
	s.auditUser(r, p.User.Username, "user_created", "user created", map[string]any{"target_user_id": u.ID, "role": u.Role})
	return u, true
}

func (s *Server) getUser(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	if u, ok := s.userFromPath(w, r); ok {
		WriteJSON(w, http.StatusOK, userJSON(u))
	}
}

func (s *Server) userFromPath(w http.ResponseWriter, r *http.Request) (store.User, bool) {
	id, err := strconv.ParseInt(r.PathValue("user_id"), 10, 64)
	if err != nil {
		PathError(w, r, "user_id", "must be an integer")
		return store.User{}, false
	}
	u, err := s.auth.User(r.Context(), id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		WriteError(w, r, http.StatusNotFound, "USER_NOT_FOUND", "user "+strconv.FormatInt(id, 10)+" not found", nil)
		return u, false
	case err != nil:
		s.Internal(w, r, err)
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
		s.Internal(w, r, err)
	}
}

func (s *Server) patchUser(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	var req patchUserRequest
	if !Decode(w, r, &req) {
		return
	}
	u, ok := s.userFromPath(w, r)
	if !ok {
		return
	}

	u, changed, err := s.auth.UpdateUser(r.Context(), u.ID, req.patch())
	if err != nil {
		s.userChangeError(w, r, err)
		return
	}
	if len(changed) > 0 {
		s.auditUser(r, p.User.Username, "user_updated", "user updated",
			map[string]any{"target_user_id": u.ID, "changed_fields": changed})
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
	s.auditUser(r, p.User.Username, "user_deleted", "user deleted", map[string]any{"target_user_id": u.ID})
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) resetPassword(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	var req resetPasswordRequest
	if !Decode(w, r, &req) {
		return
	}
	u, ok := s.userFromPath(w, r)
	if !ok {
		return
	}
	if _, err := s.auth.SetPassword(r.Context(), u.ID, nil, req.NewPassword); err != nil {
		s.userChangeError(w, r, err)
		return
	}
	s.auditUser(r, p.User.Username, "password_reset", "password reset", map[string]any{"target_user_id": u.ID})
	WriteJSON(w, http.StatusOK, messageResponse{Success: true, Message: "password reset"})
}

func (s *Server) changePassword(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	var req changePasswordRequest
	if !Decode(w, r, &req) {
		return
	}
	u, err := s.auth.SetPassword(r.Context(), p.User.ID, &req.CurrentPassword, req.NewPassword)
	if err != nil {
		s.userChangeError(w, r, err)
		return
	}
	tokens, err := s.auth.IssueFor(u)
	if err != nil {
		s.Internal(w, r, err)
		return
	}
	s.auditUser(r, p.User.Username, "password_changed", "password changed", map[string]any{"target_user_id": u.ID})
	WriteJSON(w, http.StatusOK, tokensResponse{Success: true, Message: "password changed", Tokens: tokens})
}
