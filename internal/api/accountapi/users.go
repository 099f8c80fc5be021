package accountapi

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/kaiserhub/kaiser/internal/api"
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

// patchUserRequest changes only what it names (docs/api.md §1.2 partial updates).
type patchUserRequest struct {
	Email    *string         `json:"email" api:"min=3,max=100,pattern=email"`
	FullName *string         `json:"full_name" api:"max=100"`
	Role     *string         `json:"role" api:"min=1,max=20,enum=admin|operator|viewer"`
	IsActive api.Field[bool] `json:"is_active"`
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

func (q *resetPasswordRequest) Validate(b *api.Body) { checkPassword(b, "new_password", q.NewPassword) }

type changePasswordRequest struct {
	CurrentPassword string `json:"current_password" api:"required,min=1,max=128"`
	NewPassword     string `json:"new_password" api:"required,raw"`
}

func (q *changePasswordRequest) Validate(b *api.Body) {
	checkPassword(b, "new_password", q.NewPassword)
}

// userRoutes are docs/api.md §5: the users an admin manages, and changing the own password.
func (h *handlers) userRoutes(g api.Group) {
	const (
		list  = "/api/v1/users"
		one   = list + "/{user_id}"
		admin = auth.RoleAdmin
	)
	g.Add("GET", list, admin, "List users", h.listUsers, api.Returns(userList{}))
	g.Add("POST", list, admin, "Create a user", h.postUser,
		api.Accepts(createUserRequest{}), api.Returns(userResponse{}))
	g.Add("GET", one, admin, "Get a user", h.getUser, api.Returns(userResponse{}))
	g.Add("PATCH", one, admin, "Update a user", h.patchUser,
		api.Accepts(patchUserRequest{}), api.Returns(userResponse{}))
	g.Add("DELETE", one, admin, "Delete a user", h.deleteUser)
	g.Add("POST", one+"/reset-password", admin, "Set a user's password", h.resetPassword,
		api.Accepts(resetPasswordRequest{}), api.Returns(messageResponse{}))
	g.Add("PATCH", list+"/me/password", auth.RoleViewer, "Change the own password", h.changePassword,
		api.Accepts(changePasswordRequest{}), api.Returns(tokensResponse{}))
}

func (h *handlers) listUsers(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	us, err := h.accounts.Users(r.Context())
	if err != nil {
		h.srv.Internal(w, r, err)
		return
	}
	out := make([]userResponse, 0, len(us))
	for _, u := range us {
		out = append(out, userJSON(u))
	}
	api.WriteJSON(w, http.StatusOK, userList{Success: true, Users: out, Total: len(out)})
}

func (h *handlers) register(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	if u, ok := h.createUser(w, r, p); ok {
		api.WriteJSON(w, http.StatusOK, userCreated{Success: true, Message: "user created", User: userJSON(u)})
	}
}

func (h *handlers) postUser(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	if u, ok := h.createUser(w, r, p); ok {
		api.WriteJSON(w, http.StatusCreated, userJSON(u))
	}
}

func (h *handlers) createUser(w http.ResponseWriter, r *http.Request, p auth.Principal) (store.User, bool) {
	var req createUserRequest
	if !api.Decode(w, r, &req) {
		return store.User{}, false
	}
	u, err := h.accounts.CreateUser(r.Context(), req.newUser(req.Role))
	switch {
	case errors.Is(err, store.ErrDuplicate):
		api.WriteError(w, r, http.StatusConflict, "DUPLICATE", "username or email already exists", nil)
		return u, false
	case err != nil:
		h.srv.Internal(w, r, err)
		return u, false
	}
	h.auditUser(r, p.User.Username, "user_created", "user created", map[string]any{"target_user_id": u.ID, "role": u.Role})
	return u, true
}

func (h *handlers) getUser(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	if u, ok := h.userFromPath(w, r); ok {
		api.WriteJSON(w, http.StatusOK, userJSON(u))
	}
}

func (h *handlers) userFromPath(w http.ResponseWriter, r *http.Request) (store.User, bool) {
	id, err := strconv.ParseInt(r.PathValue("user_id"), 10, 64)
	if err != nil {
		api.PathError(w, r, "user_id", "must be an integer")
		return store.User{}, false
	}
	u, err := h.accounts.User(r.Context(), id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		api.WriteError(w, r, http.StatusNotFound, "USER_NOT_FOUND", "user "+strconv.FormatInt(id, 10)+" not found", nil)
		return u, false
	case err != nil:
		h.srv.Internal(w, r, err)
		return u, false
	}
	return u, true
}

func (h *handlers) userChangeError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, store.ErrLastAdmin):
		api.WriteError(w, r, http.StatusConflict, "LAST_ADMIN", "the change would leave no active admin", nil)
	case errors.Is(err, store.ErrDuplicate):
		api.WriteError(w, r, http.StatusConflict, "DUPLICATE", "email already exists", nil)
	case errors.Is(err, store.ErrNotFound):
		api.WriteError(w, r, http.StatusNotFound, "USER_NOT_FOUND", "user not found", nil)
	case errors.Is(err, auth.ErrCannotDeleteSelf):
		api.WriteError(w, r, http.StatusBadRequest, "CANNOT_DELETE_SELF", "an admin cannot delete their own account", nil)
	case errors.Is(err, auth.ErrInvalidCurrentPwd):
		api.WriteError(w, r, http.StatusBadRequest, "INVALID_CURRENT_PASSWORD", "current password is wrong", nil)
	default:
		h.srv.Internal(w, r, err)
	}
}

func (h *handlers) patchUser(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	var req patchUserRequest
	if !api.Decode(w, r, &req) {
		return
	}
	u, ok := h.userFromPath(w, r)
	if !ok {
		return
	}

	u, changed, err := h.accounts.UpdateUser(r.Context(), u.ID, req.patch())
	if err != nil {
		h.userChangeError(w, r, err)
		return
	}
	if len(changed) > 0 {
		h.auditUser(r, p.User.Username, "user_updated", "user updated",
			map[string]any{"target_user_id": u.ID, "changed_fields": changed})
	}
	api.WriteJSON(w, http.StatusOK, userJSON(u))
}

func (h *handlers) deleteUser(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	u, ok := h.userFromPath(w, r)
	if !ok {
		return
	}
	if err := h.accounts.DeleteUser(r.Context(), p.User, u.ID); err != nil {
		h.userChangeError(w, r, err)
		return
	}
	h.auditUser(r, p.User.Username, "user_deleted", "user deleted", map[string]any{"target_user_id": u.ID})
	w.WriteHeader(http.StatusNoContent)
}

func (h *handlers) resetPassword(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	var req resetPasswordRequest
	if !api.Decode(w, r, &req) {
		return
	}
	u, ok := h.userFromPath(w, r)
	if !ok {
		return
	}
	if _, err := h.accounts.SetPassword(r.Context(), u.ID, nil, req.NewPassword); err != nil {
		h.userChangeError(w, r, err)
		return
	}
	h.auditUser(r, p.User.Username, "password_reset", "password reset", map[string]any{"target_user_id": u.ID})
	api.WriteJSON(w, http.StatusOK, messageResponse{Success: true, Message: "password reset"})
}

func (h *handlers) changePassword(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	var req changePasswordRequest
	if !api.Decode(w, r, &req) {
		return
	}
	u, err := h.accounts.SetPassword(r.Context(), p.User.ID, &req.CurrentPassword, req.NewPassword)
	if err != nil {
		h.userChangeError(w, r, err)
		return
	}
	tokens, err := h.accounts.IssueFor(u)
	if err != nil {
		h.srv.Internal(w, r, err)
		return
	}
	h.auditUser(r, p.User.Username, "password_changed", "password changed", map[string]any{"target_user_id": u.ID})
	api.WriteJSON(w, http.StatusOK, tokensResponse{Success: true, Message: "password changed", Tokens: tokens})
}
