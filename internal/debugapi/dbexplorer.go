package debugapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/kaiserhub/kaiser/internal/api"
	"github.com/kaiserhub/kaiser/internal/auth"
	"github.com/kaiserhub/kaiser/internal/store/sqlite"
)

// explorer is the read-only database explorer of docs/api.md §16.2 over the
// main and the control database.
type explorer interface {
	Tables(ctx context.Context) ([]sqlite.ExplorerTable, error)
	Table(ctx context.Context, name string) (sqlite.ExplorerTable, error)
	Rows(ctx context.Context, table string, q sqlite.RowQuery) (sqlite.RowPage, error)
	Record(ctx context.Context, table, id string) (sqlite.ExplorerTable, []any, error)
}

var _ explorer = (*sqlite.Explorer)(nil)

// explorerTimeout keeps an explorer request inside its 30 s even on a
// large table (docs/api.md §1.1).
const explorerTimeout = 20 * time.Second

type columnSchema struct {
	Name       string  `json:"name"`
	Type       string  `json:"type"`
	Nullable   bool    `json:"nullable"`
	PrimaryKey bool    `json:"primary_key"`
	ForeignKey *string `json:"foreign_key"`
	Masked     bool    `json:"masked"`
}

// tableSchema is one table of the catalogue; primary_key is the key's
// column, or its columns joined by "," (the form a record id takes).
type tableSchema struct {
	TableName  string         `json:"table_name"`
	Database   string         `json:"database"`
	Columns    []columnSchema `json:"columns"`
	RowCount   int64          `json:"row_count"`
	PrimaryKey *string        `json:"primary_key"`
	TimeColumn *string        `json:"time_column"`
}

type tablesResponse struct {
	Success bool          `json:"success"`
	Tables  []tableSchema `json:"tables"`
}

// timeWindow is the default window a time-series table was read with.
type timeWindow struct {
	Column string  `json:"column"`
	From   *string `json:"from"`
}

type rowsResponse struct {
	Success    bool             `json:"success"`
	TableName  string           `json:"table_name"`
	Data       []map[string]any `json:"data"`
	TotalCount int64            `json:"total_count"`
	Page       int              `json:"page"`
	PageSize   int              `json:"page_size"`
	TotalPages int64            `json:"total_pages"`
	// TimeWindow is set when no filter named the table's time column.
	TimeWindow *timeWindow `json:"time_window"`
}

type recordResponse struct {
	Success   bool           `json:"success"`
	TableName string         `json:"table_name"`
	Record    map[string]any `json:"record"`
}

func (d *Debug) explorerRoutes(unavailable string) {
	const base = "/api/v1/debug/db"
	if d.explorer == nil {
		no := func(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
			api.WriteError(w, r, http.StatusNotImplemented, "NOT_IMPLEMENTED", unavailable, nil)
		}
		for _, p := range []string{"/tables", "/{table_name}/schema", "/{table_name}", "/{table_name}/{record_id}"} {
			d.admin("GET", base+p, "Database explorer: not available on this store (501)", no, nil, nil)
		}
		return
	}
	d.admin("GET", base+"/tables", "Every table of both databases with its columns and row count", d.dbTables,
		nil, tablesResponse{})
	d.admin("GET", base+"/{table_name}/schema", "One table's columns and row count", d.dbSchema, nil, tableSchema{})
	d.admin("GET", base+"/{table_name}", "A table's rows, filtered, sorted and paged, secrets masked", d.dbRows,
		nil, rowsResponse{})
	d.admin("GET", base+"/{table_name}/{record_id}", "One row by its primary key, secrets masked", d.dbRecord,
		nil, recordResponse{})
}

func schemaJSON(t sqlite.ExplorerTable) tableSchema {
	out := tableSchema{
		TableName:  t.Name,
		Database:   t.Database,
		Columns:    make([]columnSchema, 0, len(t.Columns)),
		RowCount:   t.RowCount,
		TimeColumn: api.NullString(t.TimeColumn),
		PrimaryKey: api.NullString(strings.Join(t.PrimaryKey, ",")),
	}
	for _, c := range t.Columns {
		out.Columns = append(out.Columns, columnSchema{
			Name:       c.Name,
			Type:       c.Kind,
			Nullable:   c.Nullable,
			PrimaryKey: c.PrimaryKey,
			ForeignKey: api.NullString(c.ForeignKey),
			Masked:     c.Masked,
		})
	}
	return out
}

// rowJSON is a row as an object; times are response timestamps (docs/api.md §1.3).
func rowJSON(t sqlite.ExplorerTable, vals []any) map[string]any {
	out := make(map[string]any, len(vals))
	for i, c := range t.Columns {
		v := vals[i]
		if at, ok := v.(time.Time); ok {
			v = api.Timestamp(at)
		}
		out[c.Name] = v
	}
	return out
}

// explorerError answers the explorer's errors with their codes.
func (d *Debug) explorerError(w http.ResponseWriter, r *http.Request, err error) {
	var fe *sqlite.FilterError
	table := map[string]any{"table_name": r.PathValue("table_name")}
	switch {
	case errors.Is(err, sqlite.ErrTableNotFound):
		api.WriteError(w, r, http.StatusNotFound, "TABLE_NOT_FOUND", "table not found", table)
	case errors.Is(err, sqlite.ErrRecordNotFound):
		api.WriteError(w, r, http.StatusNotFound, "RECORD_NOT_FOUND", "record not found", table)
	case errors.As(err, &fe):
		api.WriteError(w, r, http.StatusBadRequest, "INVALID_FILTER", fe.Msg, table)
	case errors.Is(err, context.DeadlineExceeded):
		api.WriteError(w, r, http.StatusServiceUnavailable, "SERVICE_UNAVAILABLE",
			"the query took too long; narrow it with filters", table)
	default:
		d.srv.Internal(w, r, err)
	}
}

func (d *Debug) dbTables(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	ctx, cancel := context.WithTimeout(r.Context(), explorerTimeout)
	defer cancel()
	tables, err := d.explorer.Tables(ctx)
	if err != nil {
		d.explorerError(w, r, err)
		return
	}
	out := tablesResponse{Success: true, Tables: make([]tableSchema, 0, len(tables))}
	for _, t := range tables {
		out.Tables = append(out.Tables, schemaJSON(t))
	}
	api.WriteJSON(w, http.StatusOK, out)
}

func (d *Debug) dbSchema(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	ctx, cancel := context.WithTimeout(r.Context(), explorerTimeout)
	defer cancel()
	t, err := d.explorer.Table(ctx, r.PathValue("table_name"))
	if err != nil {
		d.explorerError(w, r, err)
		return
	}
	api.WriteJSON(w, http.StatusOK, schemaJSON(t))
}

// dbRows answers a row query in the order of docs/api.md §1.5: the paging
// and order parameters (422), the table (404), then filters and sort (400).
func (d *Debug) dbRows(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	q := api.NewQuery(r)
	page, size := q.Int("page", 1, 1, 1<<30), q.Int("page_size", 50, 1, 500)
	desc := true
	switch strings.ToLower(q.Str("sort_order", 4)) {
	case "", "desc":
	case "asc":
		desc = false
	default:
		q.Fail("sort_order", "must be asc or desc", "enum")
	}
	sortBy := q.Str("sort_by", 128)
	rawFilters := r.URL.Query().Get("filters")
	if q.Done(w, r) {
		return
	}

	ctx, cancel := context.WithTimeout(r.Context(), explorerTimeout)
	defer cancel()
	table := r.PathValue("table_name")
	conds, err := parseFilters(rawFilters)
	if err != nil {
		if _, terr := d.explorer.Table(ctx, table); terr != nil {
			err = terr
		}
		d.explorerError(w, r, err)
		return
	}
	res, err := d.explorer.Rows(ctx, table, sqlite.RowQuery{
		Conditions: conds,
		SortBy:     sortBy,
		Desc:       desc,
		Offset:     (page - 1) * size,
		Limit:      size,
	})
	if err != nil {
		d.explorerError(w, r, err)
		return
	}
	out := rowsResponse{
		Success:    true,
		TableName:  res.Table.Name,
		Data:       make([]map[string]any, 0, len(res.Rows)),
		TotalCount: res.Total,
		Page:       page,
		PageSize:   size,
		TotalPages: (res.Total + int64(size) - 1) / int64(size),
	}
	if !res.Since.IsZero() {
		out.TimeWindow = &timeWindow{Column: res.Table.TimeColumn, From: api.Timestamp(res.Since)}
	}
	for _, row := range res.Rows {
		out.Data = append(out.Data, rowJSON(res.Table, row))
	}
	api.WriteJSON(w, http.StatusOK, out)
}

func (d *Debug) dbRecord(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	ctx, cancel := context.WithTimeout(r.Context(), explorerTimeout)
	defer cancel()
	t, row, err := d.explorer.Record(ctx, r.PathValue("table_name"), r.PathValue("record_id"))
	if err != nil {
		d.explorerError(w, r, err)
		return
	}
	api.WriteJSON(w, http.StatusOK, recordResponse{Success: true, TableName: t.Name, Record: rowJSON(t, row)})
}

// Bounds of the filters parameter.
const (
	maxFilterBytes = 8 << 10
	maxConditions  = 50
)

var filterOps = []string{"gte", "lte", "gt", "lt", "in", "contains"}

// parseFilters reads the filters parameter of docs/api.md §16.2, a JSON
// object whose keys are a column or column__op; a malformed one is an
// invalid filter (400), like a filter the table cannot take.
func parseFilters(raw string) ([]sqlite.Condition, error) {
	if strings.TrimSpace(raw) == "" {
		return nil, nil
	}
	if len(raw) > maxFilterBytes {
		return nil, &sqlite.FilterError{Msg: "filters must be at most 8 KiB"}
	}
	dec := json.NewDecoder(bytes.NewReader([]byte(raw)))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil || m == nil || dec.More() {
		return nil, &sqlite.FilterError{Msg: `filters must be a JSON object such as {"col": v, "col__gte": x}`}
	}
	if len(m) > maxConditions {
		return nil, &sqlite.FilterError{Msg: "at most 50 filters"}
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys) // the same filters give the same SQL
	out := make([]sqlite.Condition, 0, len(keys))
	for _, k := range keys {
		col, op := k, "eq"
		if i := strings.LastIndex(k, "__"); i > 0 && slices.Contains(filterOps, k[i+2:]) {
			col, op = k[:i], k[i+2:]
		}
		out = append(out, sqlite.Condition{Column: col, Op: op, Value: m[k]})
	}
	return out, nil
}
