use std::net::IpAddr;
use std::sync::mpsc;
use std::time::Duration;

use super::*;

/// A viewer whose first message blocks its thread until the test lets go: its mailbox
/// then fills as a viewer's does whose socket takes nothing.
struct Stuck {
    release: Option<mpsc::Receiver<()>>,
    got: mpsc::Sender<&'static str>,
}

impl Actor for Stuck {
    type Context = Context<Self>;
}

impl Handler<ToViewer> for Stuck {
    type Result = ();

    fn handle(&mut self, msg: ToViewer, _: &mut Self::Context) {
        if let Some(release) = self.release.take() {
            let _ = release.recv_timeout(Duration::from_secs(10));
        }
        let kind = match msg {
            ToViewer::Dropped(reason) => reason,
            _ => "other",
        };
        let _ = self.got.send(kind);
    }
}

fn handle(id: u64, recipient: Recipient<ToViewer>) -> ViewerHandle {
    ViewerHandle {
        id,
        recipient,
        ip: IpAddr::from([127, 0, 0, 1]),
        operator: None,
    }
}

#[actix_rt::test]
async fn a_viewer_that_takes_nothing_is_dropped_and_told_why() {
    let (release_tx, release_rx) = mpsc::channel();
    let (got_tx, got_rx) = mpsc::channel();
    let arbiter = Arbiter::new();
    // The capacity is set before the viewer is handed out, as the watch socket does.
    let ready = got_tx.clone();
    let stuck = Stuck::start_in_arbiter(&arbiter.handle(), move |ctx| {
        ctx.set_mailbox_capacity(VIEWER_MAILBOX);
        let _ = ready.send("ready");
        Stuck {
            release: Some(release_rx),
            got: got_tx,
        }
    });
    assert_eq!(got_rx.recv_timeout(Duration::from_secs(10)), Ok("ready"));
    let mut viewers = Viewers::new(2);
    viewers.add(handle(7, stuck.recipient())).unwrap();
    let chunk = ToViewer::Output(Bytes::from_static(b"x"));
    let mut dropped = Vec::new();
    for _ in 0..VIEWER_MAILBOX * 4 {
        dropped.extend(viewers.send(&chunk));
        if !dropped.is_empty() {
            break;
        }
        // Give the viewer's thread the first message (it then blocks on it).
        tokio::task::yield_now().await;
    }
    assert_eq!(
        dropped.len(),
        1,
        "the stuck viewer is dropped once its mailbox is full"
    );
    assert_eq!(dropped[0].0.id, 7);
    assert!(viewers.is_empty());
    // The session goes on: sending to no viewer costs nothing and drops nothing.
    assert!(viewers.send(&chunk).is_empty());
    release_tx.send(()).unwrap();
    // Everything it had queued, then why it was dropped.
    let mut taken = 0;
    loop {
        match got_rx.recv_timeout(Duration::from_secs(10)) {
            Ok("slow") => break,
            Ok(_) => taken += 1,
            Err(e) => panic!("never told it was dropped ({e}), after {taken} messages"),
        }
    }
    assert!(taken >= VIEWER_MAILBOX, "its mailbox was full: {taken}");
    arbiter.stop();
}

#[test]
fn viewers_are_bounded() {
    let system = actix::System::new();
    system.block_on(async {
        let (got, _rx) = mpsc::channel();
        let stuck = Stuck { release: None, got }.start();
        let mut viewers = Viewers::new(1);
        viewers.add(handle(1, stuck.clone().recipient())).unwrap();
        assert_eq!(viewers.full(), Some(WatchRefused::TooMany(1)));
        assert_eq!(
            viewers.add(handle(2, stuck.recipient())),
            Err(WatchRefused::TooMany(1))
        );
        assert!(viewers.remove(1).is_some());
        assert!(viewers.remove(1).is_none());
        assert_eq!(viewers.full(), None);
    });
}
