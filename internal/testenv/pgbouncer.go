package testenv

import (
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

// PgBouncerPoolSize is the server sessions the PgBouncer of PgBouncer
// keeps per database and user: fewer than a process's pools open, so that
// their transactions take turns on the same sessions.
const PgBouncerPoolSize = 4

// PgBouncer starts a PgBouncer of t's own on a free loopback port, in
// transaction pooling mode, in front of the PostgreSQL server of dsn (a
// postgres:// URL), and returns dsn through it: the same database and
// user, with the PgBouncer's address. It refuses the startup parameters it
// does not know, as a deployment's does. It stops when t ends. Without
// pgbouncer, t skips, or fails when CI is set.
func PgBouncer(t testing.TB, dsn string) string {
	t.Helper()
	bin := pgbouncerBinary(t)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatalf("database url: %v", err)
	}
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = "5432"
	}
	name := u.User.Username()
	if name == "" {
		name = "postgres"
	}
	cred, dir := pgbouncerUser(t)
	listen := FreePort(t)
	// trust still wants the user in auth_file.
	users := filepath.Join(dir, "users.txt")
	conf := filepath.Join(dir, "pgbouncer.ini")
	writeFile(t, users, fmt.Sprintf("%q \"\"\n", name))
	writeFile(t, conf, fmt.Sprintf(`[databases]
* = host=%s port=%s

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = trust
auth_file = %s
pool_mode = transaction
default_pool_size = %d
max_client_conn = 1000
logfile =
pidfile =
log_connections = 0
log_disconnections = 0
`, host, port, listen, users, PgBouncerPoolSize))

	u.Host = runServer(t, exec.Command(bin, conf), "pgbouncer", listen, cred)
	return u.String()
}

// pgbouncerBinary returns the path of pgbouncer, or skips t (fails it when
// CI is set). Debian installs it in /usr/sbin, which a user's PATH may
// leave out.
func pgbouncerBinary(t testing.TB) string {
	t.Helper()
	bin, err := exec.LookPath("pgbouncer")
	if err == nil {
		return bin
	}
	if _, statErr := os.Stat("/usr/sbin/pgbouncer"); statErr == nil {
		return "/usr/sbin/pgbouncer"
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("pgbouncer is required (CI is set): %v", err)
	}
	t.Skipf("pgbouncer is not installed, skipping: %v", err)
	return ""
}

// pgbouncerUser returns the credential to run pgbouncer with, nil but for
// root (PgBouncer refuses to run as root; it then runs as the postgres
// user, or nobody), and a directory it can read, removed when t ends. Not
// t.TempDir: another user must be able to enter it.
func pgbouncerUser(t testing.TB) (*syscall.Credential, string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "orderstream-pgbouncer-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if os.Geteuid() != 0 {
		return nil, dir
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		u, err = user.Lookup("nobody")
	}
	if err != nil {
		t.Fatalf("running as root, pgbouncer must run as another user: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, dir
}

func writeFile(t testing.TB, name, text string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}
