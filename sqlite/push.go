package sqlite

import (
	"context"
	"fmt"
	"time"

	"xmppbouncer/store"
)

// PushRegistrations returns every stored registration, ordered by resource.
func (db *DB) PushRegistrations(ctx context.Context) ([]store.PushRegistration, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT resource, service, node, form, created
		FROM push_registrations ORDER BY resource`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list push registrations: %w", err)
	}
	defer rows.Close()
	var out []store.PushRegistration
	for rows.Next() {
		var r store.PushRegistration
		var created int64
		if err := rows.Scan(&r.Resource, &r.Service, &r.Node, &r.Form, &created); err != nil {
			return nil, fmt.Errorf("sqlite: list push registrations: %w", err)
		}
		r.Created = time.Unix(created, 0).UTC()
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list push registrations: %w", err)
	}
	return out, nil
}

// SetPushRegistration stores r, replacing any registration of the same
// resource; it is committed when SetPushRegistration returns.
func (db *DB) SetPushRegistration(ctx context.Context, r store.PushRegistration) error {
	_, err := db.w.ExecContext(ctx, `INSERT INTO push_registrations(resource, service, node, form, created)
		VALUES(?, ?, ?, ?, ?)
		ON CONFLICT(resource) DO UPDATE SET service = excluded.service, node = excluded.node,
			form = excluded.form, created = excluded.created`,
		r.Resource, r.Service, r.Node, r.Form, r.Created.Unix())
	if err != nil {
		return fmt.Errorf("sqlite: store push registration of %q: %w", r.Resource, err)
	}
	return nil
}

// DeletePushRegistration removes the registration of resource if it still
// names service and node (so a newer one is never removed by mistake). It
// reports whether a row was removed.
func (db *DB) DeletePushRegistration(ctx context.Context, resource, service, node string) (bool, error) {
	res, err := db.w.ExecContext(ctx, `DELETE FROM push_registrations
		WHERE resource = ? AND service = ? AND node = ?`, resource, service, node)
	if err != nil {
		return false, fmt.Errorf("sqlite: delete push registration of %q: %w", resource, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("sqlite: delete push registration of %q: %w", resource, err)
	}
	return n > 0, nil
}
