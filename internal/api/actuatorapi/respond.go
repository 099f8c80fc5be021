package actuatorapi

import (
	"net/http"

	"github.com/kaiserhub/kaiser/internal/api"
)

// pageMeta and page are the paginated list of docs/api.md §1.4 and §1.7.
type pageMeta struct {
	Page       int  `json:"page"`
	PageSize   int  `json:"page_size"`
	TotalItems int  `json:"total_items"`
	TotalPages int  `json:"total_pages"`
	HasNext    bool `json:"has_next"`
	HasPrev    bool `json:"has_prev"`
}

type page[T any] struct {
	Success    bool     `json:"success"`
	Data       []T      `json:"data"`
	Pagination pageMeta `json:"pagination"`
}

// writePage answers one page of rows filtered in memory: a page past the
// end is empty with correct meta, never 404.
func writePage[T any](w http.ResponseWriter, rows []T, pg, size int) {
	total := len(rows)
	pages := (total + size - 1) / size
	from, to := min((pg-1)*size, total), min(pg*size, total)
	data := rows[from:to]
	if data == nil {
		data = []T{}
	}
	api.WriteJSON(w, http.StatusOK, page[T]{
		Success: true,
		Data:    data,
		Pagination: pageMeta{
			Page:       pg,
			PageSize:   size,
			TotalItems: total,
			TotalPages: pages,
			HasNext:    pg < pages,
			HasPrev:    pg > 1,
		},
	})
}

// fieldError is one entry of a 422 (docs/api.md §1.5).
type fieldError struct {
	Loc  []any  `json:"loc"`
	Msg  string `json:"msg"`
	Type string `json:"type"`
}

type validationBody struct {
	Success bool            `json:"success"`
	Detail  []fieldError    `json:"detail"`
	Error   validationError `json:"error"`
}

type validationError struct {
	Code      string         `json:"code"`
	Message   string         `json:"message"`
	Details   map[string]any `json:"details"`
	RequestID string         `json:"request_id"`
}

// writeValidation answers 422 in the shape of docs/api.md §1.5 for errors
// found outside the body decoder: a path value, or a command's value or
// duration refused by the domain.
func writeValidation(w http.ResponseWriter, r *http.Request, errs []fieldError) {
	api.WriteJSON(w, http.StatusUnprocessableEntity, validationBody{
		Detail: errs,
		Error: validationError{
			Code:      "VALIDATION_ERROR",
			Message:   "request validation failed",
			Details:   map[string]any{"errors": errs},
			RequestID: api.RequestID(r),
		},
	})
}

func pathError(w http.ResponseWriter, r *http.Request, name, msg string) {
	writeValidation(w, r, []fieldError{{Loc: []any{"path", name}, Msg: msg, Type: "string_pattern_mismatch"}})
}
