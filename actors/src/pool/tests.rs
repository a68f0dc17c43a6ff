use std::collections::HashSet;

use termcell_entry::READY;
use tokio::io::AsyncWriteExt;

use super::*;
use crate::docker::fake::{Call, Op};
use crate::testing::{settings, World};

fn pool_settings(size: usize) -> crate::SessionSettings {
    let mut s = settings();
    s.pool_size = size;
    s.profile.entry = Some("/usr/local/bin/termcell-entry".into());
    s.cmd = Some(vec!["/bin/sh".into()]);
    s
}

async fn wait_ready(world: &World, n: i64) {
    for _ in 0..500 {
        if world.shared.metrics.pool_ready.get() == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "pool_ready stayed {} (wanted {n})",
        world.shared.metrics.pool_ready.get()
    );
}

fn creates(calls: &[Call]) -> usize {
    calls
        .iter()
        .filter(|c| matches!(c, Call::Create { .. }))
        .count()
}

fn removed(calls: &[Call], id: &str) -> bool {
    calls
        .iter()
        .any(|c| matches!(c, Call::Remove(r) if r == id))
}

#[actix_rt::test]
async fn claims_take_distinct_sandboxes_and_an_empty_pool_answers_at_once() {
    let world = World::new(pool_settings(2));
    let pool = Pool::new(world.shared.clone()).start();
    let mut shells = Vec::new();
    for _ in 0..2 {
        let mut shell = world.fake.shell().await;
        shell.output(READY).await;
        shells.push(shell);
    }
    wait_ready(&world, 2).await;
    // The refills after these claims wait for a READY no test writes: the third is empty.
    let claims = futures_util::future::join_all((0..3).map(|_| pool.send(Claim))).await;
    let warm: Vec<Warm> = claims.into_iter().filter_map(|c| c.unwrap()).collect();
    assert_eq!(warm.len(), 2);
    let ids: HashSet<&str> = warm.iter().map(|w| w.id.as_str()).collect();
    assert_eq!(ids.len(), 2, "never the same sandbox twice");
    let made: Vec<&str> = shells.iter().map(|s| s.container_id.as_str()).collect();
    assert!(ids.iter().all(|id| made.contains(id)));
    assert!(ids.iter().all(|id| world.shared.pool.owns(id)));
    assert!(ids
        .iter()
        .all(|id| world.shared.pool.session_of(id).is_none()));
    // The claimed TTY is the one the entry program waits on.
    let mut warm = warm.into_iter().next().unwrap();
    let line = crate::entry::encode_line([("A", &b"1"[..])]);
    warm.tty.writer.write_all(&line).await.unwrap();
    let shell = shells
        .iter_mut()
        .find(|s| s.container_id == warm.id)
        .unwrap();
    shell.expect_input(&line).await;
    // The pool makes new ones.
    world.fake.wait_for_calls(|calls| creates(calls) >= 4).await;
}

#[actix_rt::test]
async fn a_sandbox_that_ends_while_waiting_is_removed_and_replaced() {
    let world = World::new(pool_settings(1));
    let _pool = Pool::new(world.shared.clone()).start();
    let mut shell = world.fake.shell().await;
    shell.output(READY).await;
    wait_ready(&world, 1).await;
    let id = shell.container_id.clone();
    world.fake.kill(shell, false);
    let mut next = world.fake.shell().await;
    assert_ne!(next.container_id, id);
    world.fake.wait_for_calls(|calls| removed(calls, &id)).await;
    next.output(READY).await;
    wait_ready(&world, 1).await;
}

#[actix_rt::test]
async fn a_sandbox_that_prints_anything_else_is_not_kept() {
    let world = World::new(pool_settings(1));
    let _pool = Pool::new(world.shared.clone()).start();
    let mut shell = world.fake.shell().await;
    let id = shell.container_id.clone();
    shell.output(b"/ $ ").await;
    world.fake.wait_for_calls(|calls| removed(calls, &id)).await;
    assert_eq!(world.shared.metrics.pool_ready.get(), 0);
    assert!(!world.shared.pool.owns(&id));
}

#[actix_rt::test]
async fn a_failing_engine_is_retried_after_a_backoff() {
    let world = World::new(pool_settings(1));
    world.fake.fail(Op::Create);
    let _pool = Pool::new(world.shared.clone()).start();
    world.fake.wait_for_calls(|calls| creates(calls) >= 2).await;
    let errors = world
        .shared
        .metrics
        .docker_errors
        .with_label_values(&["create"])
        .get();
    assert!(errors >= 1);
}

#[test]
fn backoff_doubles_up_to_a_cap() {
    assert_eq!(backoff(1), BACKOFF_MIN);
    assert_eq!(backoff(2), BACKOFF_MIN * 2);
    assert_eq!(backoff(3), BACKOFF_MIN * 4);
    assert_eq!(backoff(40), BACKOFF_MAX);
}
