/*
 * kvz-idmap: the user-namespace plumbing runc 1.1.5 and util-linux 2.38 (without newuidmap) cannot do.
 * Each verb makes a user namespace mapping 0 -> HOSTID (SIZE ids) in a child process:
 *   kvz-idmap mount SRC DST HOSTID SIZE [USERNS_FILE]
 * Mounts SRC at DST so that a file owned by id N on disk appears owned by HOSTID+N (N < SIZE):
 * a VE whose user namespace maps 0 -> HOSTID then sees the shared, unshifted template as its
 * own root's (open_tree(OPEN_TREE_CLONE) + mount_setattr(MOUNT_ATTR_IDMAP, userns fd) +
 * move_mount). With USERNS_FILE (an existing empty file) the user namespace is also kept by a
 * bind mount there: the VE's, which runc joins on create — one helper run per boot, not two.
 *   kvz-idmap userns USERNS_FILE HOSTID SIZE
 * Only keeps the user namespace on USERNS_FILE.
 *   kvz-idmap bind PID SRC DST [SRC DST ...]
 * `bind` (lxcfs.ts) puts host files SRC over DST inside the mount namespace of PID (a running VE's
 * init), without restarting it: open_tree(OPEN_TREE_CLONE) of each SRC on the host, setns into the
 * VE's mount namespace, detach a FUSE mount already on DST (a dead lxcfs's), move_mount the clone.
 * Built by hack/setup.sh; no libraries beyond libc.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/mount.h>

#ifndef MOUNT_ATTR_IDMAP
#define MOUNT_ATTR_IDMAP 0x00100000
#endif
#ifndef __NR_mount_setattr
#define __NR_mount_setattr 442
#endif
#ifndef __NR_open_tree
#define __NR_open_tree 428
#endif
#ifndef __NR_move_mount
#define __NR_move_mount 429
#endif
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif

static int die(const char *what) {
  fprintf(stderr, "kvz-idmap: %s: %s\n", what, strerror(errno));
  return 1;
}

static int write_file(const char *path, const char *text) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = write(fd, text, strlen(text));
  int saved = errno;
  close(fd);
  errno = saved;
  return n == (ssize_t)strlen(text) ? 0 : -1;
}

#ifndef FUSE_SUPER_MAGIC
#define FUSE_SUPER_MAGIC 0x65735546
#endif

/* argv: PID SRC DST [SRC DST ...]. Every SRC is cloned before entering the VE (its path is the host's). */
static int bind_into(int argc, char **argv) {
  enum { MAX_BINDS = 32 };
  int n = (argc - 1) / 2, trees[MAX_BINDS];
  if (argc < 3 || (argc - 1) % 2 != 0 || n > MAX_BINDS) {
    fprintf(stderr, "usage: kvz-idmap bind PID SRC DST [SRC DST ...] (at most %d pairs)\n", MAX_BINDS);
    return 2;
  }
  char path[64];
  snprintf(path, sizeof path, "/proc/%s/ns/mnt", argv[0]);
  int ns = open(path, O_RDONLY | O_CLOEXEC);
  if (ns < 0) return die("open the VE's mount namespace");
  for (int i = 0; i < n; i++) {
    trees[i] = (int)syscall(__NR_open_tree, AT_FDCWD, argv[1 + 2 * i], OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
    if (trees[i] < 0) return die(argv[1 + 2 * i]);
  }
  if (setns(ns, CLONE_NEWNS) < 0) return die("setns into the VE's mount namespace");
  for (int i = 0; i < n; i++) {
    const char *dst = argv[2 + 2 * i];
    struct statfs sf;
    /* Only a FUSE mount is taken away (ENOTCONN: its lxcfs died); anything else stays underneath. */
    int fuse = statfs(dst, &sf) < 0 ? errno == ENOTCONN : sf.f_type == FUSE_SUPER_MAGIC;
    if (fuse && umount2(dst, MNT_DETACH) < 0) return die(dst);
    if (syscall(__NR_move_mount, trees[i], "", AT_FDCWD, dst, MOVE_MOUNT_F_EMPTY_PATH) < 0) return die(dst);
  }
  return 0;
}

static const char USAGE[] =
    "usage: kvz-idmap mount SRC DST HOSTID SIZE [USERNS_FILE] | kvz-idmap userns USERNS_FILE HOSTID SIZE | kvz-idmap bind PID SRC DST [SRC DST ...]\n";

int main(int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[1], "bind") == 0) return bind_into(argc - 2, argv + 2);
  const char *src = NULL, *dst = NULL, *pin = NULL, *host_s, *size_s;
  if (argc == 5 && strcmp(argv[1], "userns") == 0) {
    pin = argv[2], host_s = argv[3], size_s = argv[4];
  } else if ((argc == 6 || argc == 7) && strcmp(argv[1], "mount") == 0) {
    src = argv[2], dst = argv[3], host_s = argv[4], size_s = argv[5], pin = argc == 7 ? argv[6] : NULL;
  } else {
    fputs(USAGE, stderr);
    return 2;
  }
  unsigned long host = strtoul(host_s, NULL, 10), size = strtoul(size_s, NULL, 10);
  if (size == 0) { fprintf(stderr, "kvz-idmap: SIZE must be > 0\n"); return 2; }

  int sync_pipe[2];
  if (pipe2(sync_pipe, O_CLOEXEC) < 0) return die("pipe");
  pid_t child = fork();
  if (child < 0) return die("fork");
  if (child == 0) {
    /* Child: a new user namespace that the parent maps, then waits until the parent is done. */
    char c;
    close(sync_pipe[1]);
    if (unshare(CLONE_NEWUSER) < 0) _exit(1);
    (void)!read(sync_pipe[0], &c, 1);
    _exit(0);
  }
  close(sync_pipe[0]);
  int rc = 1;
  char path[64], map[96];
  /* Wait until the child has unshared: its ns/user differs from ours. */
  for (int i = 0; i < 2000; i++) {
    char a[64] = {0}, b[64] = {0};
    snprintf(path, sizeof path, "/proc/%d/ns/user", child);
    if (readlink(path, a, sizeof a - 1) > 0 && readlink("/proc/self/ns/user", b, sizeof b - 1) > 0 && strcmp(a, b) != 0) break;
    usleep(500);
  }
  snprintf(map, sizeof map, "0 %lu %lu\n", host, size);
  snprintf(path, sizeof path, "/proc/%d/uid_map", child);
  if (write_file(path, map) < 0) { die("write uid_map"); goto out; }
  /* setgroups stays "allow" (we map as root of the parent namespace): the VE's su, login and
     sshd call setgroups(2) inside its user namespace. */
  snprintf(path, sizeof path, "/proc/%d/gid_map", child);
  if (write_file(path, map) < 0) { die("write gid_map"); goto out; }
  snprintf(path, sizeof path, "/proc/%d/ns/user", child);
  if (pin && mount(path, pin, NULL, MS_BIND, NULL) < 0) { die("bind user namespace"); goto out; }
  if (!src) { rc = 0; goto out; }

  int userns = open(path, O_RDONLY | O_CLOEXEC);
  if (userns < 0) { die("open child user namespace"); goto undo; }
  int tree = (int)syscall(__NR_open_tree, AT_FDCWD, src, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
  if (tree < 0) { die("open_tree (kernel >= 5.2 needed)"); goto undo; }
  struct mount_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.attr_set = MOUNT_ATTR_IDMAP;
  attr.userns_fd = (uint64_t)userns;
  if (syscall(__NR_mount_setattr, tree, "", AT_EMPTY_PATH, &attr, sizeof attr) < 0) {
    die("mount_setattr MOUNT_ATTR_IDMAP (kernel >= 5.12 and a filesystem that supports idmapped mounts needed)");
    goto undo;
  }
  if (syscall(__NR_move_mount, tree, "", AT_FDCWD, dst, MOVE_MOUNT_F_EMPTY_PATH) < 0) { die("move_mount"); goto undo; }
  rc = 0;
  goto out;
undo:
  /* A failed run leaves nothing mounted. */
  if (pin) umount2(pin, MNT_DETACH);
out:
  close(sync_pipe[1]);
  waitpid(child, NULL, 0);
  return rc;
}
