//! Publishing the campaign to phones (issue #4, "campaigns down"): one read-only document, at the campaign's fixed
//! id, holding its categories (English and Welsh), prompts and the filing generation's areas (names and codes). Every
//! node republishes it when it starts and when a new generation arrives; the stored version makes two nodes
//! publishing at once take turns instead of forking it.

use anyhow::Context;
use grapevine_sync_proto::automerge::AutoCommit;
use grapevine_sync_proto::campaign::{campaign_document, DEFAULT_CAMPAIGN};
use grapevine_sync_proto::campaign_doc::{fingerprint, write_campaign, AreaEntry, CampaignSheet};
use grapevine_sync_proto::DocumentId;

use crate::geo::atlas::Atlas;
use crate::ingest::Service;
use crate::store::Store;

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

/// Writes the campaign document if it is missing or says something else, through the ingest service's loop (two
/// nodes publishing at once take turns); whether it wrote. The campaign follows the service's atlas.
///
/// # Errors
/// The store fails, or the stored document cannot be loaded.
pub async fn publish(ingest: &Service) -> anyhow::Result<bool> {
    let doc_id = campaign_document(DEFAULT_CAMPAIGN.slug).context("the default campaign has a document")?;
    let sheet = sheet(&ingest.atlas().get());
    ingest.publish(doc_id, |doc| Ok(write_campaign(doc, &sheet)?)).await
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
