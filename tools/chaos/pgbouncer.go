package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// pgBouncerPoolSize is the server sessions the PgBouncer keeps for the
// application's database and user, as deploy/pgbouncer/pgbouncer.ini does:
// the seven processes' pools together open several times as many client
// connections, whose transactions take turns on these.
const pgBouncerPoolSize = 20

// pgBouncer is a PgBouncer of the harness's own (-pgbouncer), in
// transaction pooling mode in front of the harness's PostgreSQL, listening
// on 127.0.0.1 at a free port. The processes reach PostgreSQL through it
// on DATABASE_URL (DATABASE_POOLER=pgbouncer), and PostgreSQL itself on
// DATABASE_SESSION_URL; the harness's own checks read PostgreSQL directly.
//
// It stays up across the crash scenario's PostgreSQL crashes, as a
// deployment's would: its server sessions die with PostgreSQL, the
// transactions on them fail, and it opens new ones once PostgreSQL is back
// (server_login_retry, 1 s after a failed login, as the processes
// themselves retry a database they cannot reach). Its link to PostgreSQL is
// direct; the network faults sit between each process and PgBouncer (see
// network.route). pgbouncer runs as a child process, so it dies with the
// harness even when the harness is killed.
type pgBouncer struct {
	logPath string
	port    int
	child   *child
}

// url is the DATABASE_URL of database name through PgBouncer.
func (b *pgBouncer) url(name string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable&connect_timeout=5", b.port, name)
}

// startPgBouncer starts a PgBouncer in front of pg and waits until a
// statement runs through it. Like PostgreSQL, it runs as the postgres OS
// user when the harness runs as root (it refuses to run as root).
func startPgBouncer(ctx context.Context, logger *slog.Logger, dir string, pg *pgServer) (*pgBouncer, error) {
	bin, err := pgbouncerBinary()
	if err != nil {
		return nil, err
	}
	b := &pgBouncer{logPath: filepath.Join(dir, "pgbouncer.log")}
	if b.port, err = freePort(); err != nil {
		return nil, err
	}
	// trust still wants the user in auth_file. The files are readable by
	// the user pgbouncer runs as; logs go to stderr, into pgbouncer.log.
	users := filepath.Join(dir, "pgbouncer-users.txt")
	conf := filepath.Join(dir, "pgbouncer.ini")
	ini := fmt.Sprintf(`[databases]
* = host=127.0.0.1 port=%d

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = trust
auth_file = %s
pool_mode = transaction
default_pool_size = %d
max_client_conn = 1000
server_login_retry = 1
logfile =
pidfile =
log_connections = 0
log_disconnections = 0
`, pg.port, b.port, users, pgBouncerPoolSize)
	if err := errors.Join(os.WriteFile(users, []byte(`"postgres" ""`+"\n"), 0o644), os.WriteFile(conf, []byte(ini), 0o644)); err != nil {
		return nil, fmt.Errorf("write pgbouncer config: %w", err)
	}
	c, err := startChild(b.logPath, pg.cred, bin, conf)
	if err != nil {
		return nil, fmt.Errorf("start pgbouncer: %w", err)
	}
	b.child = c
	err = waitFor(ctx, 30*time.Second, c, func(ctx context.Context) error {
		db, err := sql.Open("postgres", b.url("postgres"))
		if err != nil {
			return err
		}
		defer db.Close()
		_, err = db.ExecContext(ctx, "SELECT 1")
		return err
	})
	if err != nil {
		b.stop(logger)
		return nil, fmt.Errorf("pgbouncer: %w", err)
	}
	logger.Info("chaos: pgbouncer started", "port", b.port, "bin", bin, "pool_mode", "transaction", "pool_size", pgBouncerPoolSize)
	return b, nil
}

// stop shuts PgBouncer down with SIGTERM, after the processes and their
// proxies (so no client is left, for the PgBouncer versions whose SIGTERM
// waits for its clients to go), killing it if it is still there after a
// while.
func (b *pgBouncer) stop(logger *slog.Logger) {
	if b.child == nil {
		return
	}
	if err := b.child.stop(syscall.SIGTERM, 10*time.Second); err != nil {
		logger.Warn("chaos: stop pgbouncer", "err", err)
	}
}

// pgbouncerBinary finds pgbouncer in PATH, or in /usr/sbin, where Debian
// installs it and which a user's PATH may leave out.
func pgbouncerBinary() (string, error) {
	if p, err := exec.LookPath("pgbouncer"); err == nil {
		return p, nil
	}
	const debian = "/usr/sbin/pgbouncer"
	if fi, err := os.Stat(debian); err == nil && !fi.IsDir() {
		return debian, nil
	}
	return "", errors.New("-pgbouncer: pgbouncer not found in PATH or /usr/sbin: install PgBouncer (Debian/Ubuntu: apt-get install pgbouncer)")
}
