package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	_ "github.com/lib/pq" // the database/sql driver for the checks
)

// dbName is the database the application creates and migrates.
const dbName = "orderstream_chaos"

// pgServer is a PostgreSQL cluster of the harness's own, in the temp dir,
// listening on 127.0.0.1 at a free port. postgres runs as a child process,
// so it dies with the harness even when the harness is killed.
type pgServer struct {
	binDir  string
	dataDir string
	sockDir string
	logPath string
	port    int
	cred    *syscall.Credential
	child   *child
	durable bool // fsync on, as deployed; else off (see start)
}

// url is the DATABASE_URL of database name.
func (s *pgServer) url(name string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable&connect_timeout=5", s.port, name)
}

// startPostgres initialises and starts a cluster in dir; durable keeps
// fsync on, as deployed, for a run that measures rather than crashes.
func startPostgres(ctx context.Context, logger *slog.Logger, dir string, durable bool) (*pgServer, error) {
	binDir, err := postgresBinDir()
	if err != nil {
		return nil, err
	}
	cred, err := postgresCredential()
	if err != nil {
		return nil, err
	}
	s := &pgServer{
		binDir:  binDir,
		dataDir: filepath.Join(dir, "pgdata"),
		sockDir: filepath.Join(dir, "pgsock"),
		logPath: filepath.Join(dir, "postgres.log"),
		cred:    cred,
		durable: durable,
	}
	for _, d := range []string{s.dataDir, s.sockDir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return nil, fmt.Errorf("create postgres dir: %w", err)
		}
		if cred != nil {
			if err := os.Chown(d, int(cred.Uid), int(cred.Gid)); err != nil {
				return nil, fmt.Errorf("hand postgres dir to its user: %w", err)
			}
		}
	}
	if s.port, err = freePort(); err != nil {
		return nil, err
	}
	initdb := exec.CommandContext(ctx, filepath.Join(binDir, "initdb"),
		"-D", s.dataDir, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync")
	initdb.Dir = dir
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL}
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %w\n%s", err, out)
	}
	if err := s.start(ctx); err != nil {
		s.stop(logger)
		return nil, err
	}
	logger.Info("chaos: postgres started", "port", s.port, "bin", binDir)
	return s, nil
}

// start runs postgres and waits until it accepts connections.
func (s *pgServer) start(ctx context.Context) error {
	// fsync is off unless durable: the harness crashes the server (an
	// immediate stop, so the next start recovers from the WAL), never the
	// machine, and what the server wrote before it died is in the kernel's
	// page cache, which outlives the process. Two cores are better spent
	// on the application. Autovacuum is on, as initdb leaves it.
	fsync := "off"
	if s.durable {
		fsync = "on"
	}
	c, err := startChild(s.logPath, s.cred, filepath.Join(s.binDir, "postgres"),
		"-D", s.dataDir, "-p", strconv.Itoa(s.port), "-k", s.sockDir,
		"-c", "listen_addresses=127.0.0.1", "-c", "max_connections=300", "-c", "fsync="+fsync)
	if err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	s.child = c
	return waitFor(ctx, 60*time.Second, c, func(ctx context.Context) error {
		db, err := sql.Open("postgres", s.url("postgres"))
		if err != nil {
			return err
		}
		defer db.Close()
		return db.PingContext(ctx)
	})
}

// crash stops postgres as a crash would (pg_ctl stop -m immediate: every
// server process quits at once, nothing is written out, no checkpoint) and
// starts it again, which runs crash recovery from the WAL.
func (s *pgServer) crash(ctx context.Context) (time.Duration, error) {
	began := time.Now()
	stop := exec.CommandContext(ctx, filepath.Join(s.binDir, "pg_ctl"), "stop", "-D", s.dataDir, "-m", "immediate", "-w", "-t", "60")
	stop.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred, Pdeathsig: syscall.SIGKILL}
	if out, err := stop.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("pg_ctl stop -m immediate: %w\n%s", err, out)
	}
	select {
	case <-s.child.exited:
	case <-time.After(30 * time.Second):
		return 0, fmt.Errorf("postgres pid %d still runs 30s after pg_ctl stop -m immediate", s.child.pid())
	}
	if err := s.start(ctx); err != nil {
		return 0, err
	}
	return time.Since(began), nil
}

func (s *pgServer) stop(logger *slog.Logger) {
	if s.child == nil {
		return
	}
	if err := s.child.stop(syscall.SIGINT, 30*time.Second); err != nil {
		logger.Warn("chaos: stop postgres", "err", err)
	}
}

// postgresBinDir finds initdb, postgres and pg_ctl: the newest Debian-style
// /usr/lib/postgresql/<version>/bin, else pg_config --bindir, else PATH.
func postgresBinDir() (string, error) {
	has := func(dir string) bool {
		for _, name := range []string{"initdb", "postgres", "pg_ctl"} {
			if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
				return false
			}
		}
		return true
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int { return versionOf(b) - versionOf(a) })
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		dirs = append(dirs, strings.TrimSpace(string(out)))
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		dirs = append(dirs, filepath.Dir(p))
	}
	for _, d := range dirs {
		if has(d) {
			return d, nil
		}
	}
	return "", errors.New("PostgreSQL server binaries (initdb, postgres, pg_ctl) not found in /usr/lib/postgresql/*/bin, " +
		"pg_config --bindir or PATH: install the PostgreSQL server (Debian/Ubuntu: apt-get install postgresql)")
}

// versionOf is the major version in /usr/lib/postgresql/<version>/bin.
func versionOf(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

// postgresCredential is whom initdb and postgres run as: they refuse to run
// as root, so as root they run as the postgres OS user.
func postgresCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root, PostgreSQL must run as the postgres OS user, which is missing: %w", err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("read postgres user ids: %w", err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, nil
}
