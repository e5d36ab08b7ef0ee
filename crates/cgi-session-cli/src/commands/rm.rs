//! `rm`: removes one session (every copy of a replicated one).

use crate::cli::{CliError, Global};
use crate::commands::session::{resolve, session_driver};
use crate::store::Store;
use crate::util::{decode, print_out, show_id};

pub(crate) async fn run(g: &Global, input: &str) -> Result<(), CliError> {
    let store = Store::open(g).await?;
    let (id, _) = resolve(g, &store, input).await?;
    let shown = show_id(id.as_str(), g.full_ids);
    let (driver, replicas) = session_driver(&store, &id).await?;
    if store.bare_ids() {
        // Bare-id keys share the server with other applications: remove only a session
        // stored under this id.
        let is_session = match driver.load(&id, None).await.map_err(CliError::failed)? {
            Some(loaded) => decode(&loaded.data).is_ok_and(|(_, r)| r.id == id.as_str()),
            None => true, // nothing there: the removal below reports it
        };
        if !is_session {
            return Err(CliError::Failed(format!(
                "the key {shown} on {} holds no session stored under that id that this tool can read (driver:memcached shares the server's key space with other applications); not removed",
                store.describe()
            )));
        }
    }
    if driver.remove(&id).await.map_err(CliError::failed)? {
        let copies = match &replicas {
            Some(r) => format!(
                ": replicated, all {} cop{} (on {}) replaced by a tombstone, so none comes back",
                r.copies,
                if r.copies == 1 { "y" } else { "ies" },
                r.servers.join(", ")
            ),
            None => String::new(),
        };
        print_out(&format!(
            "removed session {shown} from {}{copies}\n",
            store.describe()
        ));
        Ok(())
    } else {
        Err(CliError::Failed(format!(
            "no session {shown} on {} (already removed or expired)",
            store.describe()
        )))
    }
}
