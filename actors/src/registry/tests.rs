use std::collections::HashMap;

use super::*;
use crate::container::ContainerDeath;
use crate::docker::fake::Call;
use crate::session::ToClient;
use crate::testing::{ask, settings, within, Client, World};
use crate::SessionSettings;

fn registry(world: &World) -> Addr<Registry> {
    Registry::new(world.shared.clone(), vec![Arbiter::current()]).start()
}

async fn open(
    registry: &Addr<Registry>,
    world: &World,
    client: &Client,
) -> Result<(Uuid, Addr<SessionActor>), Refusal> {
    ask(registry, OpenSession(world.request(client))).await
}

/// Labels of a container of `deployment`, run `instance`, session `session`.
fn labelled(deployment: &str, instance: &str, session: Uuid) -> HashMap<String, String> {
    HashMap::from([
        (
            labels::MANAGED_BY.to_string(),
            labels::MANAGED_BY_VALUE.to_string(),
        ),
        (labels::DEPLOYMENT.to_string(), deployment.to_string()),
        (labels::INSTANCE.to_string(), instance.to_string()),
        (labels::SESSION.to_string(), session.to_string()),
    ])
}

#[actix_rt::test]
async fn sessions_over_capacity_are_refused() {
    let world = World::new(SessionSettings {
        max_sessions: 1,
        ..settings()
    });
    let registry = registry(&world);
    let mut first = Client::new(1);
    let (id, _) = open(&registry, &world, &first).await.expect("room for one");
    first.expect_connected(id).await;
    let second = Client::new(2);
    assert_eq!(
        open(&registry, &world, &second).await.err(),
        Some(Refusal::AtCapacity)
    );
    let capacity = ask(&registry, GetCapacity).await.unwrap();
    assert_eq!((capacity.active, capacity.max), (1, 1));
}

#[actix_rt::test]
async fn resume_needs_the_same_credentials() {
    let world = World::new(settings());
    let registry = registry(&world);
    let client = Client::new(1);
    let (id, addr) = open(&registry, &world, &client).await.unwrap();
    let resume = |session_id, key: &str| ResumeSession {
        session_id,
        fingerprint: world.fingerprint(key),
    };
    let found = ask(&registry, resume(id, "key-one")).await;
    assert_eq!(found.ok(), Some(addr));
    assert_eq!(
        ask(&registry, resume(id, "key-two")).await.err(),
        Some(Refusal::CredentialsMismatch)
    );
    assert_eq!(
        ask(&registry, resume(Uuid::new_v4(), "key-one"))
            .await
            .err(),
        Some(Refusal::UnknownSession)
    );
}

#[actix_rt::test]
async fn operators_see_and_end_sessions_by_id() {
    let world = World::new(settings());
    let registry = registry(&world);
    let mut client = Client::new(1);
    let (id, _) = open(&registry, &world, &client).await.unwrap();
    client.expect_connected(id).await;
    let listed = ask(&registry, ListSessions).await.unwrap();
    assert_eq!(listed.iter().map(|i| i.id).collect::<Vec<_>>(), vec![id]);
    assert!(ask(&registry, GetSession(id)).await.unwrap().is_some());
    assert!(ask(&registry, GetSession(Uuid::new_v4()))
        .await
        .unwrap()
        .is_none());
    let unknown = EndSession {
        id: Uuid::new_v4(),
        cause: EndCause::AdminKill,
    };
    assert!(!ask(&registry, unknown).await.unwrap());
    let kill = EndSession {
        id,
        cause: EndCause::AdminKill,
    };
    assert!(ask(&registry, kill).await.unwrap());
    assert_eq!(client.expect_end().await, EndCause::AdminKill);
}

#[actix_rt::test]
async fn drain_warns_ends_every_session_and_refuses_new_ones() {
    let world = World::new(settings());
    let registry = registry(&world);
    let mut clients = [Client::new(1), Client::new(2)];
    for client in &mut clients {
        let (id, _) = open(&registry, &world, client).await.unwrap();
        client.expect_connected(id).await;
    }
    let drain = Drain {
        warn: Duration::ZERO,
        cause: EndCause::Shutdown,
        deadline: Duration::from_secs(5),
    };
    assert_eq!(within("the drain", ask(&registry, drain)).await, 2);
    for client in &mut clients {
        assert!(matches!(
            client.next().await,
            ToClient::Warning {
                kind: crate::notice::WarningKind::ServerShutdown,
                ..
            }
        ));
        assert_eq!(client.expect_end().await, EndCause::Shutdown);
    }
    let capacity = ask(&registry, GetCapacity).await.unwrap();
    assert_eq!((capacity.active, capacity.draining), (0, true));
    assert_eq!(
        open(&registry, &world, &Client::new(3)).await.err(),
        Some(Refusal::Draining)
    );
    within(
        "both removals",
        world.fake.wait_for_calls(|calls| {
            calls
                .iter()
                .filter(|c| matches!(c, Call::Remove(_)))
                .count()
                == 2
        }),
    )
    .await;
}

#[actix_rt::test]
async fn engine_events_reach_the_session_of_the_container() {
    let world = World::new(settings());
    let registry = registry(&world);
    let mut client = Client::new(1);
    let (id, _) = open(&registry, &world, &client).await.unwrap();
    let shell = within("the TTY", world.fake.shell()).await;
    client.expect_connected(id).await;
    let event = |action: &str| ContainerEvent {
        container_id: shell.container_id.clone(),
        action: action.into(),
        session: Some(id.to_string()),
        exit_code: None,
    };
    world.fake.emit(event("oom"));
    assert!(matches!(
        client.next().await,
        ToClient::Notice(n) if n == [crate::notice::Notice::MemoryKill]
    ));
    assert_eq!(
        world
            .shared
            .metrics
            .rejections
            .with_label_values(&["oom"])
            .get(),
        1
    );
    world.fake.emit(event("destroy"));
    assert_eq!(
        client.expect_end().await,
        EndCause::ContainerDied(ContainerDeath::Removed)
    );
}

#[actix_rt::test]
async fn reaper_removes_orphans_of_this_run_only() {
    let world = World::new(SessionSettings {
        reap_interval: Duration::from_millis(50),
        ..settings()
    });
    let instance = world.shared.settings.instance.clone();
    let now = chrono::Utc::now().timestamp();
    let orphan = world
        .fake
        .add_container(labelled("unit", &instance, Uuid::new_v4()), now);
    let other_deployment = world
        .fake
        .add_container(labelled("other", &instance, Uuid::new_v4()), now);
    let registry = registry(&world);
    let mut client = Client::new(1);
    let (id, _) = open(&registry, &world, &client).await.unwrap();
    let shell = within("the TTY", world.fake.shell()).await;
    client.expect_connected(id).await;

    let removed = Call::Remove(orphan.clone());
    within(
        "the orphan's removal",
        world.fake.wait_for_calls(|calls| calls.contains(&removed)),
    )
    .await;
    assert_eq!(world.fake.removals(&shell.container_id), 0);
    assert_eq!(world.fake.removals(&other_deployment), 0);
}

#[actix_rt::test]
async fn containers_of_earlier_runs_are_swept_by_age() {
    let world = World::new(settings());
    let current = world.shared.settings.instance.clone();
    let now = chrono::Utc::now().timestamp();
    let old = world
        .fake
        .add_container(labelled("unit", "earlier", Uuid::new_v4()), now - 7200);
    let young = world
        .fake
        .add_container(labelled("unit", "earlier", Uuid::new_v4()), now);
    let ours = world
        .fake
        .add_container(labelled("unit", &current, Uuid::new_v4()), now - 7200);
    let theirs = world
        .fake
        .add_container(labelled("other", "earlier", Uuid::new_v4()), now - 7200);
    let engine = &world.shared.engine;
    let hour = Some(Duration::from_secs(3600));
    assert_eq!(
        reap_previous_runs(engine, "unit", &current, hour)
            .await
            .unwrap(),
        1
    );
    assert_eq!(world.fake.removals(&old), 1);
    assert_eq!(world.fake.removals(&young), 0);
    assert_eq!(
        reap_previous_runs(engine, "unit", &current, None)
            .await
            .unwrap(),
        1
    );
    assert_eq!(world.fake.removals(&young), 1);
    assert_eq!(world.fake.removals(&ours), 0);
    assert_eq!(world.fake.removals(&theirs), 0);
}
