package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// This file is the read-only database explorer of docs/api.md §16.2 over
// both files: the main database's tables under their own names, the
// control database's as "control.<name>". The catalogue is read from the
// databases themselves; a table or column name from a request only selects
// an entry of it, and the SQL is written with the catalogue's names, quoted,
// and bound values. Everything runs in read-only transactions on the read
// pools, whose connections are query_only.

// Column kinds of the explorer (docs/api.md §16.2).
const (
	KindString   = "string"
	KindInteger  = "integer"
	KindFloat    = "float"
	KindBoolean  = "boolean"
	KindDatetime = "datetime"
	KindJSON     = "json"
	KindUUID     = "uuid"
)

// Masked is what the explorer shows instead of a secret.
const Masked = "***MASKED***"

// controlPrefix qualifies the control database's tables.
const controlPrefix = "control."

// Errors of the explorer.
var (
	ErrTableNotFound  = errors.New("table not found")
	ErrRecordNotFound = errors.New("record not found")
	// ErrInvalidFilter wraps every refused filter or sort (FilterError).
	ErrInvalidFilter = errors.New("invalid filter")
)

// FilterError says which filter or sort was refused and why.
type FilterError struct{ Msg string }

func (e *FilterError) Error() string { return e.Msg }

func (e *FilterError) Unwrap() error { return ErrInvalidFilter }

func invalidFilter(format string, args ...any) error {
	return &FilterError{Msg: fmt.Sprintf(format, args...)}
}

// ExplorerColumn is one column of the catalogue.
type ExplorerColumn struct {
	Name       string
	Kind       string
	Nullable   bool
	PrimaryKey bool
	// ForeignKey is "table.column", empty for none.
	ForeignKey string
	// Masked columns are shown as Masked and cannot be filtered or sorted on.
	Masked bool
}

// ExplorerTable is one table of the catalogue.
type ExplorerTable struct {
	// Name is the table's name, "control."-qualified for the control database.
	Name     string
	Database string // main or control
	Columns  []ExplorerColumn
	// PrimaryKey lists the key's columns in key order (none: the rowid).
	PrimaryKey []string
	// TimeColumn is the time of a time-series table, "" for others.
	TimeColumn string
	RowCount   int64

	local string // the name inside its database
}

func (t ExplorerTable) column(name string) (ExplorerColumn, bool) {
	for _, c := range t.Columns {
		if c.Name == name {
			return c, true
		}
	}
	return ExplorerColumn{}, false
}

// Explorer reads the tables of both databases.
type Explorer struct {
	dbs []explored
	now func() time.Time
}

type explored struct {
	database string
	prefix   string
	db       *sql.DB
}

// Explorer is the read-only explorer of the store's two databases.
func (s *Store) Explorer() *Explorer {
	return &Explorer{
		dbs: []explored{
			{database: "main", db: s.read},
			{database: "control", prefix: controlPrefix, db: s.control.read},
		},
		now: time.Now,
	}
}

// timeSeries are the tables that grow with time, by their time column; a
// query of one without a filter on it reads the last 24 hours only.
var timeSeries = map[string]string{
	"readings":                         "ts",
	"rollup_1m":                        "bucket",
	"rollup_1h":                        "bucket",
	"rollup_1d":                        "bucket",
	"device_heartbeats":                "received_at",
	"device_transitions":               "at",
	"audit_log":                        "created_at",
	"zone_changes":                     "at",
	controlPrefix + "actuator_history": "issued_at",
}

// DefaultWindow is what a time-series table shows without a time filter.
const DefaultWindow = 24 * time.Hour

// Tables is the catalogue with each table's row count, both databases,
// sorted by name.
func (e *Explorer) Tables(ctx context.Context) ([]ExplorerTable, error) {
	var out []ExplorerTable
	for _, d := range e.dbs {
		err := readOnly(ctx, d.db, func(tx *sql.Tx) error {
			tables, err := d.catalogue(ctx, tx)
			if err != nil {
				return err
			}
			for i := range tables {
				if err := tables[i].count(ctx, tx); err != nil {
					return err
				}
			}
			out = append(out, tables...)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("explorer: %s database: %w", d.database, err)
		}
	}
	slices.SortFunc(out, func(a, b ExplorerTable) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// Table is one table of the catalogue with its row count, or ErrTableNotFound.
func (e *Explorer) Table(ctx context.Context, name string) (ExplorerTable, error) {
	var t ExplorerTable
	err := e.inTable(ctx, name, func(tx *sql.Tx, found ExplorerTable) error {
		t = found
		return t.count(ctx, tx)
	})
	return t, err
}

func (t *ExplorerTable) count(ctx context.Context, tx *sql.Tx) error {
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+quote(t.local)).Scan(&t.RowCount); err != nil {
		return fmt.Errorf("count %s: %w", t.Name, err)
	}
	return nil
}

// inTable runs fn in a read-only transaction on the database that holds
// the table called name, with its catalogue entry.
func (e *Explorer) inTable(ctx context.Context, name string, fn func(*sql.Tx, ExplorerTable) error) error {
	for _, d := range e.dbs {
		if d.prefix != "" && !strings.HasPrefix(name, d.prefix) || d.prefix == "" && strings.HasPrefix(name, controlPrefix) {
			continue
		}
		return readOnly(ctx, d.db, func(tx *sql.Tx) error {
			tables, err := d.catalogue(ctx, tx)
			if err != nil {
				return fmt.Errorf("explorer: %s database: %w", d.database, err)
			}
			for _, t := range tables {
				if t.Name == name {
					return fn(tx, t)
				}
			}
			return ErrTableNotFound
		})
	}
	return ErrTableNotFound
}

func readOnly(ctx context.Context, db *sql.DB, fn func(*sql.Tx) error) error {
	tx, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return err
	}
	defer tx.Rollback()
	return fn(tx)
}

// catalogue reads the tables of one database and their columns.
func (d explored) catalogue(ctx context.Context, tx *sql.Tx) ([]ExplorerTable, error) {
	rows, err := tx.QueryContext(ctx, `
		SELECT name FROM sqlite_master
		WHERE type = 'table' AND name NOT LIKE 'sqlite\_%' ESCAPE '\'
		ORDER BY name`)
	if err != nil {
		return nil, err
	}
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return nil, err
		}
		names = append(names, n)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}

	out := make([]ExplorerTable, 0, len(names))
	for _, n := range names {
		t := ExplorerTable{Name: d.prefix + n, Database: d.database, local: n}
		if err := t.readColumns(ctx, tx); err != nil {
			return nil, fmt.Errorf("table %s: %w", n, err)
		}
		if _, ok := t.column(timeSeries[t.Name]); ok {
			t.TimeColumn = timeSeries[t.Name]
		}
		out = append(out, t)
	}
	return out, nil
}

func (t *ExplorerTable) readColumns(ctx context.Context, tx *sql.Tx) error {
	fks := map[string]string{}
	rows, err := tx.QueryContext(ctx, `SELECT "from", "table", COALESCE("to", '') FROM pragma_foreign_key_list(?)`, t.local)
	if err != nil {
		return err
	}
	for rows.Next() {
		var from, table, to string
		if err := rows.Scan(&from, &table, &to); err != nil {
			rows.Close()
			return err
		}
		fks[from] = table + "." + to
	}
	rows.Close()

	rows, err = tx.QueryContext(ctx, `SELECT name, type, "notnull", pk FROM pragma_table_info(?) ORDER BY cid`, t.local)
	if err != nil {
		return err
	}
	defer rows.Close()
	keyed := map[int]string{}
	for rows.Next() {
		var name, declared string
		var notNull, pk int
		if err := rows.Scan(&name, &declared, &notNull, &pk); err != nil {
			return err
		}
		t.Columns = append(t.Columns, ExplorerColumn{
			Name:       name,
			Kind:       kindOf(t.Name, name, declared),
			Nullable:   notNull == 0 && pk == 0,
			PrimaryKey: pk > 0,
			ForeignKey: fks[name],
			Masked:     secretName(name),
		})
		if pk > 0 {
			keyed[pk] = name
		}
	}
	for i := 1; i <= len(keyed); i++ {
		t.PrimaryKey = append(t.PrimaryKey, keyed[i])
	}
	return rows.Err()
}

// kindOf is a column's kind: its declared type, refined by the hub's
// naming (every time is stored as unix milliseconds in an INTEGER column
// named *_at, ts, at, …; flags are INTEGER 0/1; documents are JSON text).
func kindOf(table, column, declared string) string {
	d := strings.ToUpper(declared)
	switch {
	case strings.Contains(d, "INT"):
		switch {
		case strings.HasSuffix(column, "_at") || slices.Contains(
			[]string{"ts", "at", "bucket", "last_seen", "last_ts", "device_time"}, column):
			return KindDatetime
		case strings.HasPrefix(column, "is_") || slices.Contains(
			[]string{"active", "success", "suppressed", "safe_mode", "rules_paused"}, column):
			return KindBoolean
		}
		return KindInteger
	case strings.Contains(d, "REAL") || strings.Contains(d, "FLOA") || strings.Contains(d, "DOUB") ||
		strings.Contains(d, "NUMERIC"): // the readings' values (migration 11): numbers, some stored as integers
		return KindFloat
	}
	switch {
	case slices.Contains([]string{"doc", "metadata", "details", "gpios", "clear_attempts"}, column):
		return KindJSON
	case column == "id" && table != "notifications" || column == "alert_id":
		return KindUUID
	}
	return KindString
}

// secretName reports whether a column, setting or JSON key holds a secret
// (docs/api.md §16.2: password and token hashes, secrets, API keys; and
// here tokens and credentials themselves, such as the emergency tokens).
func secretName(name string) bool {
	n := strings.ToLower(name)
	for _, s := range []string{"password", "secret", "token_hash", "api_key", "apikey", "credential", "private_key"} {
		if strings.Contains(n, s) {
			return true
		}
	}
	return n == "token" || strings.HasSuffix(n, "_token") || strings.HasSuffix(n, "-token")
}

// Condition is one filter of a row query: Op is eq, gt, gte, lt, lte, in or
// contains; Value is a JSON value (string, json.Number, float64, bool, nil,
// or a list for in).
type Condition struct {
	Column string
	Op     string
	Value  any
}

// RowQuery selects and orders the rows of a table.
type RowQuery struct {
	Conditions []Condition
	// SortBy is a column; empty sorts by the time of a time-series table,
	// else by the primary key.
	SortBy        string
	Desc          bool
	Offset, Limit int
}

// RowPage is one page of a table's rows; each row's values are in the
// order of Table.Columns.
type RowPage struct {
	Table ExplorerTable
	Rows  [][]any
	Total int64
	// Since is the start of the default window of a time-series table
	// queried without a filter on its time, zero otherwise.
	Since time.Time
}

// Rows queries a table's rows.
func (e *Explorer) Rows(ctx context.Context, table string, q RowQuery) (RowPage, error) {
	var page RowPage
	err := e.inTable(ctx, table, func(tx *sql.Tx, t ExplorerTable) error {
		page.Table = t
		where, args, err := t.where(q.Conditions)
		if err != nil {
			return err
		}
		if t.TimeColumn != "" && !slices.ContainsFunc(q.Conditions, func(c Condition) bool { return c.Column == t.TimeColumn }) {
			page.Since = e.now().Add(-DefaultWindow).UTC()
			where = append(where, quote(t.TimeColumn)+" >= ?")
			args = append(args, page.Since.UnixMilli())
		}
		order, err := t.order(q.SortBy, q.Desc)
		if err != nil {
			return err
		}

		from := " FROM " + quote(t.local)
		if len(where) > 0 {
			from += " WHERE " + strings.Join(where, " AND ")
		}
		if err := tx.QueryRowContext(ctx, "SELECT COUNT(*)"+from, args...).Scan(&page.Total); err != nil {
			return err
		}
		query := "SELECT " + t.selectList() + from + " ORDER BY " + order + " LIMIT ? OFFSET ?"
		page.Rows, err = t.scan(ctx, tx, query, append(args, q.Limit, q.Offset)...)
		return err
	})
	return page, err
}

// Record is the row whose primary key is id: the key's value, or for a
// composite key its values joined by "," in key order (a table without a
// declared key is addressed by rowid).
func (e *Explorer) Record(ctx context.Context, table, id string) (ExplorerTable, []any, error) {
	var t ExplorerTable
	var row []any
	err := e.inTable(ctx, table, func(tx *sql.Tx, found ExplorerTable) error {
		t = found
		keys := t.PrimaryKey
		parts := []string{id}
		if len(keys) > 1 {
			parts = strings.Split(id, ",")
		}
		if len(keys) == 0 {
			keys = []string{"rowid"}
		}
		if len(parts) != len(keys) {
			return ErrRecordNotFound
		}
		var where []string
		var args []any
		for i, k := range keys {
			kind := KindInteger
			if c, ok := t.column(k); ok {
				kind = c.Kind
			}
			v, err := bindValue(kind, parts[i])
			if err != nil {
				return ErrRecordNotFound // a key of the wrong type names no row
			}
			where = append(where, quote(k)+" = ?")
			args = append(args, v)
		}
		rows, err := t.scan(ctx, tx, "SELECT "+t.selectList()+" FROM "+quote(t.local)+
			" WHERE "+strings.Join(where, " AND ")+" LIMIT 1", args...)
		if err != nil {
			return err
		}
		if len(rows) == 0 {
			return ErrRecordNotFound
		}
		row = rows[0]
		return nil
	})
	return t, row, err
}

func (t ExplorerTable) selectList() string {
	cols := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		cols[i] = quote(c.Name)
	}
	return strings.Join(cols, ", ")
}

// maxFilterValues bounds an in list.
const maxFilterValues = 500

// where turns the conditions into SQL with bound values; a column that is
// not in the table, a masked column or a value of the wrong type is refused.
func (t ExplorerTable) where(conds []Condition) ([]string, []any, error) {
	var where []string
	var args []any
	for _, c := range conds {
		col, ok := t.column(c.Column)
		switch {
		case !ok:
			return nil, nil, invalidFilter("table %s has no column %q", t.Name, c.Column)
		case col.Masked:
			return nil, nil, invalidFilter("column %s is masked and cannot be filtered on", col.Name)
		}
		name := quote(col.Name)
		switch c.Op {
		case "eq":
			if c.Value == nil {
				where = append(where, name+" IS NULL")
				continue
			}
			v, err := bindValue(col.Kind, c.Value)
			if err != nil {
				return nil, nil, invalidFilter("%s: %v", col.Name, err)
			}
			where, args = append(where, name+" = ?"), append(args, v)
		case "gt", "gte", "lt", "lte":
			v, err := bindValue(col.Kind, c.Value)
			if err != nil {
				return nil, nil, invalidFilter("%s__%s: %v", col.Name, c.Op, err)
			}
			op := map[string]string{"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[c.Op]
			where, args = append(where, name+" "+op+" ?"), append(args, v)
		case "in":
			list, ok := c.Value.([]any)
			if !ok || len(list) > maxFilterValues {
				return nil, nil, invalidFilter("%s__in must be a list of at most %d values", col.Name, maxFilterValues)
			}
			if len(list) == 0 {
				where = append(where, "0")
				continue
			}
			marks := make([]string, len(list))
			for i, x := range list {
				v, err := bindValue(col.Kind, x)
				if err != nil {
					return nil, nil, invalidFilter("%s__in: %v", col.Name, err)
				}
				marks[i], args = "?", append(args, v)
			}
			where = append(where, name+" IN ("+strings.Join(marks, ", ")+")")
		case "contains":
			s, ok := c.Value.(string)
			if !ok || col.Kind != KindString && col.Kind != KindJSON && col.Kind != KindUUID {
				return nil, nil, invalidFilter("%s__contains needs a text column and a string", col.Name)
			}
			where = append(where, name+` LIKE ? ESCAPE '\'`)
			args = append(args, "%"+likeEscaper.Replace(s)+"%")
		default:
			return nil, nil, invalidFilter("unknown operator %q", c.Op)
		}
	}
	return where, args, nil
}

var likeEscaper = strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)

// order is the ORDER BY clause: the chosen column, then the primary key
// (or rowid) so that pages do not overlap.
func (t ExplorerTable) order(sortBy string, desc bool) (string, error) {
	dir := " ASC"
	if desc {
		dir = " DESC"
	}
	var cols []string
	switch {
	case sortBy != "":
		col, ok := t.column(sortBy)
		switch {
		case !ok:
			return "", invalidFilter("table %s has no column %q to sort by", t.Name, sortBy)
		case col.Masked:
			return "", invalidFilter("column %s is masked and cannot be sorted on", col.Name)
		}
		cols = append(cols, col.Name)
	case t.TimeColumn != "":
		cols = append(cols, t.TimeColumn)
	}
	key := t.PrimaryKey
	if len(key) == 0 {
		key = []string{"rowid"}
	}
	for _, k := range key {
		if !slices.Contains(cols, k) {
			cols = append(cols, k)
		}
	}
	for i, c := range cols {
		cols[i] = quote(c) + dir
	}
	return strings.Join(cols, ", "), nil
}

// bindValue converts a filter or key value to what the column stores: a
// datetime from RFC 3339 or unix seconds to unix milliseconds, a boolean to
// 0/1, numbers to integers or floats, and text as text.
func bindValue(kind string, v any) (any, error) {
	if s, ok := v.(string); ok && len(s) > 1000 {
		return nil, errors.New("value longer than 1000 characters")
	}
	switch kind {
	case KindInteger:
		return asInt(v)
	case KindFloat:
		f, err := asFloat(v)
		return f, err
	case KindBoolean:
		switch x := v.(type) {
		case bool:
			return boolInt(x), nil
		case string:
			if b, err := strconv.ParseBool(x); err == nil {
				return boolInt(b), nil
			}
		}
		n, err := asInt(v)
		if err != nil || n != 0 && n != 1 {
			return nil, errors.New("must be true or false")
		}
		return n, nil
	case KindDatetime:
		return asMillis(v)
	}
	switch x := v.(type) {
	case string:
		return x, nil
	case json.Number:
		return x.String(), nil
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), nil
	}
	return nil, errors.New("must be a string")
}

func asFloat(v any) (float64, error) {
	var f float64
	var err error
	switch x := v.(type) {
	case json.Number:
		f, err = x.Float64()
	case float64:
		f = x
	case string:
		f, err = strconv.ParseFloat(strings.TrimSpace(x), 64)
	default:
		return 0, errors.New("must be a number")
	}
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, errors.New("must be a finite number")
	}
	return f, nil
}

func asInt(v any) (int64, error) {
	f, err := asFloat(v)
	if err != nil || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
		return 0, errors.New("must be an integer")
	}
	return int64(f), nil
}

// asMillis reads a datetime: RFC 3339 (with or without an offset; none is
// UTC), a date, or unix seconds.
func asMillis(v any) (int64, error) {
	if s, ok := v.(string); ok {
		for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02"} {
			if t, err := time.Parse(layout, strings.TrimSpace(s)); err == nil {
				return t.UnixMilli(), nil
			}
		}
	}
	f, err := asFloat(v)
	if err != nil {
		return 0, errors.New("must be an ISO 8601 datetime or unix seconds")
	}
	return int64(math.Round(f * 1000)), nil
}

// scan runs a row query and converts each value to what its column means:
// a time for a datetime, a bool for a flag, the decoded document for JSON
// (secret-looking keys masked), Masked for a secret; settings whose key
// looks secret have their value masked too.
func (t ExplorerTable) scan(ctx context.Context, tx *sql.Tx, query string, args ...any) ([][]any, error) {
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out [][]any
	for rows.Next() {
		vals := make([]any, len(t.Columns))
		ptrs := make([]any, len(vals))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		for i, c := range t.Columns {
			vals[i] = present(c, vals[i])
		}
		t.maskSettings(vals)
		out = append(out, vals)
	}
	return out, rows.Err()
}

func present(c ExplorerColumn, v any) any {
	if b, ok := v.([]byte); ok {
		v = string(b)
	}
	switch {
	case v == nil:
		return nil
	case c.Masked:
		return Masked
	}
	switch c.Kind {
	case KindDatetime:
		if n, ok := v.(int64); ok {
			return time.UnixMilli(n).UTC()
		}
	case KindBoolean:
		if n, ok := v.(int64); ok {
			return n != 0
		}
	case KindJSON:
		if s, ok := v.(string); ok {
			var doc any
			if json.Unmarshal([]byte(s), &doc) == nil {
				return maskDoc(doc)
			}
		}
	}
	return v
}

// maskDoc masks the values of secret-looking keys anywhere in a document.
func maskDoc(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, c := range x {
			if secretName(k) && c != nil {
				x[k] = Masked
			} else {
				x[k] = maskDoc(c)
			}
		}
	case []any:
		for i, c := range x {
			x[i] = maskDoc(c)
		}
	}
	return v
}

// maskSettings masks a setting's value when its key looks secret (the
// hub's system_config).
func (t ExplorerTable) maskSettings(vals []any) {
	if t.Name != "settings" {
		return
	}
	var key string
	for i, c := range t.Columns {
		if c.Name == "key" {
			key, _ = vals[i].(string)
		}
	}
	if !secretName(key) {
		return
	}
	for i, c := range t.Columns {
		if c.Name == "value" && vals[i] != nil {
			vals[i] = Masked
		}
	}
}

// quote writes a catalogue name as an SQL identifier.
func quote(name string) string { return `"` + strings.ReplaceAll(name, `"`, `""`) + `"` }
