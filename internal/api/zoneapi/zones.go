package zoneapi

import (
	"context"
	"net/http"
	"regexp"
	"strings"

	"github.com/kaiserhub/kaiser/internal/api"
	"github.com/kaiserhub/kaiser/internal/auth"
	"github.com/kaiserhub/kaiser/internal/zone"
)

// Identifier patterns of docs/api.md §9 (zone ids may carry '-', subzone ids not).
var (
	zonePattern    = regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)
	subzonePattern = regexp.MustCompile(`^[A-Za-z0-9_]{1,32}$`)
)

// zoneObject is the Zone object of docs/api.md §9.
type zoneObject struct {
	ZoneID      string  `json:"zone_id"`
	Name        string  `json:"name"`
	Description string  `json:"description"`
	Status      string  `json:"status"`
	DeviceCount int     `json:"device_count"`
	CreatedAt   *string `json:"created_at"`
	UpdatedAt   *string `json:"updated_at"`
}

func zoneOf(z zone.Info) zoneObject {
	return zoneObject{
		ZoneID:      z.ZoneID,
		Name:        z.Name,
		Description: z.Description,
		Status:      z.Status,
		DeviceCount: z.DeviceCount,
		CreatedAt:   api.Timestamp(z.CreatedAt),
		UpdatedAt:   api.Timestamp(z.UpdatedAt),
	}
}

// pageMeta is the pagination object of docs/api.md §1.7.
type pageMeta struct {
	Page       int  `json:"page"`
	PageSize   int  `json:"page_size"`
	TotalItems int  `json:"total_items"`
	TotalPages int  `json:"total_pages"`
	HasNext    bool `json:"has_next"`
	HasPrev    bool `json:"has_prev"`
}

// zonePage is a page of zones (docs/api.md §1.4 paginated list).
type zonePage struct {
	Success    bool         `json:"success"`
	Data       []zoneObject `json:"data"`
	Pagination pageMeta     `json:"pagination"`
}

func (rs *routes) listZones(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	q := api.NewQuery(r)
	status := q.Str("status", 16)
	page := q.Int("page", 1, 1, 1<<30)
	size := q.Int("page_size", 20, 1, 100)
	if status != "" && status != zone.StatusActive && status != zone.StatusArchived {
		q.Fail("status", "must be active or archived", "enum")
	}
	if q.Done(w, r) {
		return
	}

	all := rs.zones.Zones(status)
	total := len(all)
	from, to := min((page-1)*size, total), min(page*size, total)
	data := make([]zoneObject, 0, to-from)
	for _, z := range all[from:to] {
		data = append(data, zoneOf(z))
	}
	pages := (total + size - 1) / size
	api.WriteJSON(w, http.StatusOK, zonePage{
		Success: true,
		Data:    data,
		Pagination: pageMeta{
			Page:       page,
			PageSize:   size,
			TotalItems: total,
			TotalPages: pages,
			HasNext:    page < pages,
			HasPrev:    page > 1,
		},
	})
}

// createZoneRequest is the body of POST /zones.
type createZoneRequest struct {
	ZoneID      string `json:"zone_id" api:"required,min=1,max=32"`
	Name        string `json:"name" api:"required,min=1,max=100"`
	Description string `json:"description" api:"max=500"`
}

func (q *createZoneRequest) Validate(b *api.Body) {
	checkPattern(b, "zone_id", q.ZoneID, zonePattern, "[A-Za-z0-9_-]")
}

func (rs *routes) createZone(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	var q createZoneRequest
	if !api.Decode(w, r, &q) {
		return
	}
	z, err := rs.zones.CreateZone(r.Context(), zone.NewZone{ZoneID: q.ZoneID, Name: q.Name, Description: q.Description})
	if err != nil {
		rs.fail(w, r, "", err)
		return
	}
	api.WriteJSON(w, http.StatusCreated, zoneOf(z))
}

func (rs *routes) getZone(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	z, err := rs.zones.Zone(zoneID(r))
	if err != nil {
		rs.fail(w, r, "", err)
		return
	}
	api.WriteJSON(w, http.StatusOK, zoneOf(z))
}

// patchZoneRequest is the body of PATCH /zones/{zone_id}: absent fields stay,
// a null description clears it; a zone always has a name.
type patchZoneRequest struct {
	Name        api.Field[string] `json:"name" api:"min=1,max=100"`
	Description api.Field[string] `json:"description" api:"max=500"`
}

func (q *patchZoneRequest) Validate(b *api.Body) {
	if q.Name.Null {
		b.Fail("name", "must not be null", "type_error")
	}
}

func (rs *routes) patchZone(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	var q patchZoneRequest
	if !api.Decode(w, r, &q) {
		return
	}
	var p zone.ZonePatch
	if q.Name.Present {
		p.Name = &q.Name.Value
	}
	if q.Description.Present {
		p.Description = &q.Description.Value // "" when null
	}

	z, err := rs.zones.UpdateZone(r.Context(), zoneID(r), p)
	if err != nil {
		rs.fail(w, r, "", err)
		return
	}
	api.WriteJSON(w, http.StatusOK, zoneOf(z))
}

func (rs *routes) deleteZone(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	if err := rs.zones.DeleteZone(r.Context(), zoneID(r)); err != nil {
		rs.fail(w, r, "", err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// zoneAction serves archive and reactivate.
func (rs *routes) zoneAction(act func(ctx context.Context, zoneID string) (zone.Info, error)) api.Authed {
	return func(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
		z, err := act(r.Context(), zoneID(r))
		if err != nil {
			rs.fail(w, r, "", err)
			return
		}
		api.WriteJSON(w, http.StatusOK, zoneOf(z))
	}
}

// checkPattern adds a pattern error for a present, otherwise valid field.
func checkPattern(b *api.Body, name, value string, re *regexp.Regexp, chars string) {
	if value != "" && !b.Failed(name) && !re.MatchString(value) {
		b.Fail(name, "must be 1-32 characters of "+chars, "string_pattern_mismatch")
	}
}

// checkDeviceText refuses text a device would copy unescaped into its own
// JSON (docs/api.md §1.2 device-bound text, docs/protocol.md J4).
func checkDeviceText(b *api.Body, name, value string) {
	if b.Failed(name) {
		return
	}
	if strings.ContainsFunc(value, func(c rune) bool { return c == '"' || c == '\\' || c < 0x20 || c == 0x7f }) {
		b.Fail(name, `must not contain '"', '\' or control characters`, "value_error")
	}
}
