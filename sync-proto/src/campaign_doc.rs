//! The campaign as a document the server publishes and phones read (issue #4, "campaigns down"): its categories with
//! English and Welsh labels, the form's prompts, and the areas a person may pick (names and codes, no polygons), so
//! an app renders its capture form offline. Read-only to collectors: the server refuses changes to it.
//!
//! Layout at the root: `kind: "campaign"`, `slug`, `name: {en, cy}`, `prompts: {text, feeling_safe, location}` (each
//! `{en, cy}`), `categories: [{slug, label: {en, cy}}]`, `areas: [{code, name}]`, `boundaries` (the set and
//! generation the areas come from, e.g. `wards 1`).

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ObjId, ObjType, ReadDoc, ScalarValue, Value, ROOT};

use crate::campaign::{Bilingual, Campaign};

/// Text in English and Welsh.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Text {
    pub en: String,
    pub cy: String,
}

impl From<Bilingual> for Text {
    fn from(text: Bilingual) -> Self {
        Text { en: text.en.to_owned(), cy: text.cy.to_owned() }
    }
}

/// A category as the form shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CategoryEntry {
    pub slug: String,
    pub label: Text,
}

/// An area a person may pick instead of a GPS fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AreaEntry {
    pub code: String,
    pub name: String,
}

/// Everything the capture form needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignSheet {
    pub slug: String,
    pub name: Text,
    pub prompt_text: Text,
    pub prompt_feeling_safe: Text,
    pub prompt_location: Text,
    pub categories: Vec<CategoryEntry>,
    pub areas: Vec<AreaEntry>,
    pub boundaries: String,
}

impl CampaignSheet {
    /// A campaign with the areas of a boundary generation.
    #[must_use]
    pub fn new(campaign: &Campaign, areas: Vec<AreaEntry>, boundaries: String) -> Self {
        CampaignSheet {
            slug: campaign.slug.to_owned(),
            name: Text { en: campaign.name.to_owned(), cy: campaign.name_cy.to_owned() },
            prompt_text: campaign.prompts.text.into(),
            prompt_feeling_safe: campaign.prompts.feeling_safe.into(),
            prompt_location: campaign.prompts.location.into(),
            categories: campaign
                .categories
                .iter()
                .map(|category| CategoryEntry {
                    slug: category.slug.to_owned(),
                    label: Text { en: category.label.to_owned(), cy: category.label_cy.to_owned() },
                })
                .collect(),
            areas,
            boundaries,
        }
    }
}

fn put_text(doc: &mut AutoCommit, parent: &ObjId, key: &str, text: &Text) -> Result<(), automerge::AutomergeError> {
    let object = doc.put_object(parent, key, ObjType::Map)?;
    doc.put(&object, "en", text.en.as_str())?;
    doc.put(&object, "cy", text.cy.as_str())?;
    Ok(())
}

/// Writes the sheet into the document, unless it already says exactly that (so republishing an unchanged campaign
/// makes no change). Returns whether it wrote.
///
/// # Errors
/// Automerge refuses an operation (never, on a well-formed document).
pub fn write_campaign(doc: &mut AutoCommit, sheet: &CampaignSheet) -> Result<bool, automerge::AutomergeError> {
    if read_campaign(doc).as_ref() == Some(sheet) {
        return Ok(false);
    }
    doc.put(ROOT, "kind", "campaign")?;
    doc.put(ROOT, "slug", sheet.slug.as_str())?;
    put_text(doc, &ROOT, "name", &sheet.name)?;
    let prompts = doc.put_object(ROOT, "prompts", ObjType::Map)?;
    put_text(doc, &prompts, "text", &sheet.prompt_text)?;
    put_text(doc, &prompts, "feeling_safe", &sheet.prompt_feeling_safe)?;
    put_text(doc, &prompts, "location", &sheet.prompt_location)?;
    let categories = doc.put_object(ROOT, "categories", ObjType::List)?;
    for (index, category) in sheet.categories.iter().enumerate() {
        let entry = doc.insert_object(&categories, index, ObjType::Map)?;
        doc.put(&entry, "slug", category.slug.as_str())?;
        put_text(doc, &entry, "label", &category.label)?;
    }
    let areas = doc.put_object(ROOT, "areas", ObjType::List)?;
    for (index, area) in sheet.areas.iter().enumerate() {
        let entry = doc.insert_object(&areas, index, ObjType::Map)?;
        doc.put(&entry, "code", area.code.as_str())?;
        doc.put(&entry, "name", area.name.as_str())?;
    }
    doc.put(ROOT, "boundaries", sheet.boundaries.as_str())?;
    Ok(true)
}

fn string(doc: &AutoCommit, obj: &ObjId, key: &str) -> Option<String> {
    match doc.get(obj, key).ok()?? {
        (Value::Scalar(scalar), _) => match scalar.as_ref() {
            ScalarValue::Str(text) => Some(text.to_string()),
            _ => None,
        },
        _ => None,
    }
}

fn object(doc: &AutoCommit, obj: &ObjId, key: &str) -> Option<ObjId> {
    match doc.get(obj, key).ok()?? {
        (Value::Object(_), id) => Some(id),
        _ => None,
    }
}

fn text(doc: &AutoCommit, obj: &ObjId, key: &str) -> Option<Text> {
    let text = object(doc, obj, key)?;
    Some(Text { en: string(doc, &text, "en")?, cy: string(doc, &text, "cy")? })
}

fn entries(doc: &AutoCommit, key: &str) -> Option<Vec<ObjId>> {
    let list = object(doc, &ROOT, key)?;
    (0..doc.length(&list))
        .map(|index| match doc.get(&list, index).ok()?? {
            (Value::Object(ObjType::Map), id) => Some(id),
            _ => None,
        })
        .collect()
}

/// A short fingerprint of the document's state (the first 8 bytes of each head, hex, sorted): what a phone sends in
/// `join` so the server offers the campaign only when it changed. `""` for an empty document.
#[must_use]
pub fn fingerprint(doc: &mut AutoCommit) -> String {
    let mut heads: Vec<String> = doc.get_heads().iter().map(|head| head.to_string()[..16].to_owned()).collect();
    heads.sort();
    heads.join(",")
}

/// Reads the sheet back; `None` if the document is not a campaign (yet).
#[must_use]
pub fn read_campaign(doc: &AutoCommit) -> Option<CampaignSheet> {
    if string(doc, &ROOT, "kind")? != "campaign" {
        return None;
    }
    let prompts = object(doc, &ROOT, "prompts")?;
    Some(CampaignSheet {
        slug: string(doc, &ROOT, "slug")?,
        name: text(doc, &ROOT, "name")?,
        prompt_text: text(doc, &prompts, "text")?,
        prompt_feeling_safe: text(doc, &prompts, "feeling_safe")?,
        prompt_location: text(doc, &prompts, "location")?,
        categories: entries(doc, "categories")?
            .iter()
            .map(|entry| Some(CategoryEntry { slug: string(doc, entry, "slug")?, label: text(doc, entry, "label")? }))
            .collect::<Option<_>>()?,
        areas: entries(doc, "areas")?
            .iter()
            .map(|entry| Some(AreaEntry { code: string(doc, entry, "code")?, name: string(doc, entry, "name")? }))
            .collect::<Option<_>>()?,
        boundaries: string(doc, &ROOT, "boundaries")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::campaign::DEFAULT_CAMPAIGN;

    fn sheet() -> CampaignSheet {
        let areas = vec![
            AreaEntry { code: "E05008714".into(), name: "Abbey Hulton and Townsend".into() },
            AreaEntry { code: "E05008737".into(), name: "Joiner's Square".into() },
        ];
        CampaignSheet::new(&DEFAULT_CAMPAIGN, areas, "wards 1".into())
    }

    #[test]
    fn a_campaign_round_trips_through_its_document_in_both_languages() {
        let mut doc = AutoCommit::new();
        assert!(write_campaign(&mut doc, &sheet()).unwrap());
        let loaded = AutoCommit::load(&doc.save()).unwrap();
        let read = read_campaign(&loaded).unwrap();
        assert_eq!(read, sheet());
        assert_eq!(read.categories.len(), 14);
        let road = read.categories.iter().find(|category| category.slug == "road-safety").unwrap();
        assert_eq!(road.label, Text { en: "Road safety".into(), cy: "Diogelwch ar y ffyrdd".into() });
        assert!(read.prompt_feeling_safe.cy.contains("ddiogel"));
    }

    #[test]
    fn republishing_the_same_campaign_changes_nothing_and_a_new_area_list_replaces_the_old() {
        let mut doc = AutoCommit::new();
        write_campaign(&mut doc, &sheet()).unwrap();
        let heads = doc.get_heads();
        assert!(!write_campaign(&mut doc, &sheet()).unwrap());
        assert_eq!(doc.get_heads(), heads);
        let mut redrawn = sheet();
        redrawn.areas.truncate(1);
        redrawn.boundaries = "wards 2".into();
        assert!(write_campaign(&mut doc, &redrawn).unwrap());
        assert_eq!(read_campaign(&doc).unwrap(), redrawn);
        assert!(read_campaign(&AutoCommit::new()).is_none(), "an empty document is not a campaign");
        assert_eq!(fingerprint(&mut AutoCommit::new()), "");
        assert_eq!(fingerprint(&mut doc).len(), 16);
        let before = fingerprint(&mut doc);
        write_campaign(&mut doc, &sheet()).unwrap();
        assert_ne!(fingerprint(&mut doc), before, "a change changes the fingerprint");
    }
}
