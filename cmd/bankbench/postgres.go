package main

// A PostgreSQL server that bankbench starts for itself from the installed Debian package
// (postgresql, /usr/lib/postgresql/<major>/bin): its own data directory and unix socket in a
// temporary directory, so it neither needs nor touches a cluster the package may have set up.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// Bounds and settings of the PostgreSQL server.
const (
	pgInitTimeout  = 2 * time.Minute  // initdb
	pgStartTimeout = 60 * time.Second // until a connection is accepted
	pgStopTimeout  = 30 * time.Second // a fast shutdown, before SIGKILL
	pgPort         = 5432             // only names the socket file: the server listens on no TCP port
	pgUser         = "bench"          // the superuser initdb creates
	pgSystemUser   = "postgres"       // the user Debian's package creates; initdb refuses root
)

// pgSettings are the server's settings that differ from the defaults or that the comparison
// depends on. fsync, synchronous_commit and full_page_writes are PostgreSQL's defaults and are
// set anyway, so that no configuration file can turn them off: a commit returns after its WAL
// is flushed to disk, as a bankd write returns after the Raft log is fsynced on a quorum.
var pgSettings = []string{
	"fsync=on",
	"synchronous_commit=on",
	"full_page_writes=on",
	"shared_buffers=256MB",
	"max_connections=200",
	"listen_addresses=", // the unix socket only
}

// errNoPostgres says that no PostgreSQL server binary is installed.
var errNoPostgres = errors.New("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/postgres); `apt-get install -y postgresql` or `make deps-postgres` installs it")

// pgServer is a running postgres process and the directory it owns.
type pgServer struct {
	binDir  string
	dir     string // owned by the user the server runs as; holds data/, the socket and postgres.log
	logPath string
	version string // as `postgres --version` prints it
	cmd     *exec.Cmd
	exited  chan struct{} // closed when cmd has been waited for
	waitErr error
}

// findPostgres returns the bin directory of the newest PostgreSQL installed by Debian's package.
func findPostgres() (string, error) {
	matches, err := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	if err != nil {
		return "", err
	}
	if len(matches) == 0 {
		return "", errNoPostgres
	}
	major := func(p string) int {
		n, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(p))))
		return n
	}
	return filepath.Dir(slices.MaxFunc(matches, func(a, b string) int { return major(a) - major(b) })), nil
}

// pgCredential is who the server runs as: the package's postgres user when bankbench runs as
// root (initdb and postgres refuse root), else bankbench's own user (nil).
func pgCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup(pgSystemUser)
	if err != nil {
		return nil, fmt.Errorf("running as root, PostgreSQL has to run as the %q user that Debian's postgresql package creates: %w", pgSystemUser, err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("uid of %q: %w", pgSystemUser, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("gid of %q: %w", pgSystemUser, err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// startPostgres creates a database cluster in a new temporary directory with binDir's initdb
// and starts postgres on it. The caller stops it with stop.
func startPostgres(ctx context.Context, binDir string) (_ *pgServer, err error) {
	cred, err := pgCredential()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "bankbench-pg-")
	if err != nil {
		return nil, fmt.Errorf("postgres directory: %w", err)
	}
	s := &pgServer{binDir: binDir, dir: dir, logPath: filepath.Join(dir, "postgres.log")}
	defer func() {
		if err != nil {
			s.stop()
			_ = os.RemoveAll(dir)
		}
	}()
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, fmt.Errorf("hand %s to %s: %w", dir, pgSystemUser, err)
		}
	}
	// command runs one of binDir's programs as the server's user; ctx ending kills it.
	command := func(ctx context.Context, name string, args ...string) *exec.Cmd {
		cmd := exec.CommandContext(ctx, filepath.Join(binDir, name), args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "LC_ALL=C")
		// The server goes with bankbench if bankbench dies without stopping it (SIGQUIT: an
		// immediate shutdown; its data is thrown away anyway).
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGQUIT}
		return cmd
	}

	versionCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := command(versionCtx, "postgres", "--version").Output()
	if err != nil {
		return nil, fmt.Errorf("postgres --version: %w", err)
	}
	s.version = strings.TrimSpace(string(out))

	// --no-sync only skips initdb's final flush of the fresh cluster; the server itself runs
	// with fsync on.
	initCtx, cancel := context.WithTimeout(ctx, pgInitTimeout)
	defer cancel()
	initdb := command(initCtx, "initdb", "-D", filepath.Join(dir, "data"), "-U", pgUser, "-A", "trust", "-E", "UTF8", "--no-locale", "--no-sync")
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %w\n%s", err, out)
	}

	args := []string{"-D", filepath.Join(dir, "data"), "-k", dir, "-p", strconv.Itoa(pgPort)}
	for _, kv := range pgSettings {
		args = append(args, "-c", kv)
	}
	logFile, err := os.Create(s.logPath)
	if err != nil {
		return nil, fmt.Errorf("postgres log: %w", err)
	}
	defer logFile.Close() // the child has its own descriptor
	// Not bound to ctx: stop ends the server, with a fast shutdown.
	s.cmd = command(context.Background(), "postgres", args...)
	s.cmd.Stdout, s.cmd.Stderr = logFile, logFile
	if err := s.cmd.Start(); err != nil {
		s.cmd = nil
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	s.exited = make(chan struct{})
	go func() {
		s.waitErr = s.cmd.Wait()
		close(s.exited)
	}()
	if err := s.waitReady(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// connString is a libpq-style connection string to the server's unix socket.
func (s *pgServer) connString() string {
	return fmt.Sprintf("host=%s port=%d user=%s dbname=postgres sslmode=disable", s.dir, pgPort, pgUser)
}

// waitReady waits until the server accepts a connection, or fails when it exits first or
// pgStartTimeout passes.
func (s *pgServer) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, pgStartTimeout)
	defer cancel()
	var lastErr error
	for {
		select {
		case <-s.exited:
			return fmt.Errorf("postgres exited while starting (%v); its log:\n%s", s.waitErr, s.logTail(20))
		default:
		}
		attempt, cancelAttempt := context.WithTimeout(ctx, time.Second)
		conn, err := pgx.Connect(attempt, s.connString())
		if err == nil {
			err = conn.Ping(attempt)
			_ = conn.Close(attempt)
		}
		cancelAttempt()
		if err == nil {
			return nil
		}
		lastErr = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("postgres not accepting connections after %s: %v; its log:\n%s", pgStartTimeout, lastErr, s.logTail(20))
		case <-s.exited:
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// stop shuts the server down fast (SIGINT: open transactions are rolled back) and kills it if
// it is still there after pgStopTimeout. It does nothing for a server that never started.
func (s *pgServer) stop() {
	if s == nil || s.cmd == nil {
		return
	}
	select {
	case <-s.exited:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-s.exited:
	case <-time.After(pgStopTimeout):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
}

// logTail returns the last lines of the server's log.
func (s *pgServer) logTail(lines int) string {
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(all[max(0, len(all)-lines):], "\n")
}
