//! Looking at a driver's socket without a round trip (Linux): whether the server has ended the
//! session, and finding the socket a driver opened when the driver does not show it.
//!
//! Nothing here reads what a connection's user could still want: the looks are a zero-timeout
//! `poll` and a one-byte `MSG_PEEK`, which leave every byte in place.

use std::collections::HashSet;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};

use rustix::event::{PollFd, PollFlags, poll};
use rustix::fs::fstat;
use rustix::net::{RecvFlags, SocketAddrAny, SocketAddrUnix, recv};
use rustix::process::{PidfdFlags, PidfdGetfdFlags, getpid, pidfd_getfd, pidfd_open};
use rustix::time::Timespec;

/// What an idle connection's socket holds.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Look {
    /// Nothing to read, and the server has not hung up.
    Quiet,
    /// Bytes are waiting; this is the first one.
    Waiting(u8),
    /// The server hung up (or the socket is in error): the session is over.
    Ended,
}

/// Looks at `fd` without blocking and without taking anything from it.
pub(crate) fn look(fd: BorrowedFd<'_>) -> Look {
    let mut fds = [PollFd::new(&fd, PollFlags::IN | PollFlags::RDHUP)];
    let zero = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    match poll(&mut fds, Some(&zero)) {
        Ok(0) => Look::Quiet,
        Ok(_) => {
            let events = fds[0].revents();
            if events
                .intersects(PollFlags::HUP | PollFlags::ERR | PollFlags::RDHUP | PollFlags::NVAL)
            {
                return Look::Ended;
            }
            let mut first = [0u8; 1];
            match recv(fd, &mut first, RecvFlags::PEEK | RecvFlags::DONTWAIT) {
                Ok((_, 0)) => Look::Ended,
                Ok(_) => Look::Waiting(first[0]),
                Err(rustix::io::Errno::AGAIN) => Look::Quiet,
                Err(_) => Look::Ended,
            }
        }
        // A socket that cannot be polled cannot be trusted either.
        Err(_) => Look::Ended,
    }
}

/// The process's sockets at one moment: descriptor and inode.
pub(crate) struct Sockets(HashSet<(RawFd, u64)>);

impl Sockets {
    /// Lists the process's sockets (`/proc/self/fd`); empty if that cannot be read.
    pub(crate) fn now() -> Sockets {
        let mut found = HashSet::new();
        if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
            for entry in entries.flatten() {
                let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
                    continue;
                };
                let Ok(target) = std::fs::read_link(entry.path()) else {
                    continue;
                };
                let inode = target
                    .to_str()
                    .and_then(|t| t.strip_prefix("socket:["))
                    .and_then(|t| t.strip_suffix(']'))
                    .and_then(|t| t.parse().ok());
                if let Some(inode) = inode {
                    found.insert((fd, inode));
                }
            }
        }
        Sockets(found)
    }

    /// The one socket that is new since `self` and connected to `peer`, as a descriptor of
    /// our own (a duplicate, so it can never end up naming another socket). `None` when there
    /// is no such socket or more than one (another thread connected to the same server
    /// meanwhile): then nobody can tell which is which.
    pub(crate) fn new_one_to(&self, peer: &Peer) -> Option<OwnedFd> {
        let pidfd = pidfd_open(getpid(), PidfdFlags::empty()).ok()?;
        let mut found = None;
        for (fd, inode) in Sockets::now().0.difference(&self.0) {
            let Ok(copy) = pidfd_getfd(&pidfd, *fd, PidfdGetfdFlags::empty()) else {
                continue;
            };
            // The descriptor may have been closed and reused since it was listed.
            let same = fstat(&copy).is_ok_and(|stat| stat.st_ino == *inode);
            if !same || !peer.is_at(copy.as_fd()) {
                continue;
            }
            if found.replace(copy).is_some() {
                return None;
            }
        }
        found
    }
}

/// Where a driver's socket leads: a TCP port, or a Unix socket path.
pub(crate) enum Peer {
    Tcp(u16),
    Unix(std::path::PathBuf),
}

impl Peer {
    fn is_at(&self, fd: BorrowedFd<'_>) -> bool {
        let Ok(Some(address)) = rustix::net::getpeername(fd) else {
            return false;
        };
        match self {
            Peer::Tcp(port) => {
                std::net::SocketAddr::try_from(address).is_ok_and(|a| a.port() == *port)
            }
            Peer::Unix(path) => unix_path(address).is_some_and(|p| p == *path),
        }
    }
}

fn unix_path(address: SocketAddrAny) -> Option<std::path::PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let unix = SocketAddrUnix::try_from(address).ok()?;
    let path = unix.path()?;
    Some(std::ffi::OsStr::from_bytes(path.to_bytes()).into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};
    use std::time::{Duration, Instant};

    fn eventually(mut condition: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if condition() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        false
    }

    #[test]
    fn a_look_takes_nothing_and_sees_the_end() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let before = Sockets::now();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let port = listener.local_addr().unwrap().port();
        // The listener and the server side are new too, but only the client leads there.
        let ours = before
            .new_one_to(&Peer::Tcp(port))
            .expect("the client's socket");
        assert_eq!(look(ours.as_fd()), Look::Quiet);
        server.write_all(b"A").unwrap();
        assert!(eventually(|| look(ours.as_fd()) == Look::Waiting(b'A')));
        assert_eq!(look(client.as_fd()), Look::Waiting(b'A'), "still there");
        drop(server);
        assert!(eventually(|| look(ours.as_fd()) == Look::Ended));
    }
}
