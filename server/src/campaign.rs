//! Publishing the campaign to phones (issue #4, "campaigns down"): one read-only document, at the campaign's fixed
//! id, holding its categories (English and Welsh), prompts and the filing generation's areas (names and codes). Every
//! node republishes it when it starts and when a new generation arrives; the stored version makes two nodes
//! publishing at once take turns instead of forking it.

use anyhow::Context;
use grapevine_sync_proto::automerge::{ActorId, AutoCommit};
use grapevine_sync_proto::campaign::{campaign_document, DEFAULT_CAMPAIGN};
use grapevine_sync_proto::campaign_doc::{fingerprint, write_campaign, AreaEntry, CampaignSheet};
use grapevine_sync_proto::DocumentId;

use crate::atlas::Atlas;
use crate::store::{SaveError, Store};

/// The documents every device may read and none may write.
#[must_use]
pub fn is_published(doc_id: DocumentId) -> bool {
    campaign_document(DEFAULT_CAMPAIGN.slug) == Some(doc_id)
}

/// The campaign as the atlas's filing generation gives it.
#[must_use]
pub fn sheet(atlas: &Atlas) -> CampaignSheet {
    let filing = atlas.filing();
    let areas = filing
        .boundaries
        .areas()
        .iter()
        .map(|area| AreaEntry { code: area.code.clone(), name: area.name.clone() })
        .collect();
    let boundaries = format!("{} {}", filing.info.set_name, filing.info.generation);
    CampaignSheet::new(&DEFAULT_CAMPAIGN, areas, boundaries)
}

/// Writes the campaign document if it is missing or says something else; whether it wrote.
///
/// # Errors
/// The store fails, or the stored document cannot be loaded.
pub async fn publish(store: &dyn Store, atlas: &Atlas, actor: &ActorId) -> anyhow::Result<bool> {
    let doc_id = campaign_document(DEFAULT_CAMPAIGN.slug).context("the default campaign has a document")?;
    let sheet = sheet(atlas);
    for _attempt in 0..5 {
        let stored = store.load_published(doc_id).await?;
        let (mut doc, version) = match &stored {
            Some((bytes, version)) => {
                (AutoCommit::load(bytes).context("loading the campaign document")?, Some(*version))
            }
            None => (AutoCommit::new(), None),
        };
        doc.set_actor(actor.clone());
        if !write_campaign(&mut doc, &sheet)? {
            return Ok(false);
        }
        match store.save_published(doc_id, doc.save(), version).await {
            Ok(()) => return Ok(true),
            // Another node published meanwhile: look again. (The campaign carries no tags, so never stale.)
            Err(SaveError::Conflict | SaveError::StaleBoundaries) => {}
            Err(SaveError::Database(error)) => return Err(error),
        }
    }
    anyhow::bail!("the campaign document kept changing under us")
}

/// The campaign document, if a phone holding a copy with fingerprint `held` should sync it (it is published and the
/// phone's copy is not the published one).
///
/// # Errors
/// The store fails or the document cannot be loaded.
pub async fn stale_for(store: &dyn Store, held: &str) -> anyhow::Result<Option<DocumentId>> {
    let doc_id = campaign_document(DEFAULT_CAMPAIGN.slug).context("the default campaign has a document")?;
    let Some((bytes, _)) = store.load_published(doc_id).await? else { return Ok(None) };
    let mut published = AutoCommit::load(&bytes).context("loading the campaign document")?;
    Ok((fingerprint(&mut published) != held).then_some(doc_id))
}
