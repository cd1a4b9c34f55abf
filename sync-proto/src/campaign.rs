//! Campaigns: what a collector may be asked about. The default campaign is bundled so a phone can capture before it has
//! ever reached a server.

/// One category an insight may be filed under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Category {
    /// The stable slug stored in insights, e.g. `road-safety`.
    pub slug: &'static str,
    /// The English label shown on the capture form.
    pub label: &'static str,
    /// The Welsh label.
    pub label_cy: &'static str,
}

/// Text in English and Welsh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bilingual {
    pub en: &'static str,
    pub cy: &'static str,
}

/// The questions the capture form asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prompts {
    pub text: Bilingual,
    pub feeling_safe: Bilingual,
    pub location: Bilingual,
}

/// A campaign: a named list of categories, with the form's prompts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Campaign {
    pub slug: &'static str,
    pub name: &'static str,
    pub name_cy: &'static str,
    pub categories: &'static [Category],
    pub prompts: Prompts,
}

impl Campaign {
    /// The category with this slug, if the campaign has it.
    #[must_use]
    pub fn category(&self, slug: &str) -> Option<&Category> {
        self.categories.iter().find(|category| category.slug == slug)
    }
}

/// The slug of the bundled default campaign.
pub const DEFAULT_CAMPAIGN_SLUG: &str = "community-safety";

/// The bundled default campaign: "Community safety — Police and Crime Plan".
pub static DEFAULT_CAMPAIGN: Campaign = Campaign {
    slug: DEFAULT_CAMPAIGN_SLUG,
    name: "Community safety — Police and Crime Plan",
    name_cy: "Diogelwch cymunedol — Cynllun Heddlu a Throseddu",
    categories: &[
        Category { slug: "asb", label: "Anti-social behaviour", label_cy: "Ymddygiad gwrthgymdeithasol" },
        Category { slug: "drugs", label: "Drugs", label_cy: "Cyffuriau" },
        Category { slug: "violence-weapons", label: "Violence and weapons", label_cy: "Trais ac arfau" },
        Category { slug: "vehicle-crime", label: "Vehicle crime", label_cy: "Troseddau cerbydau" },
        Category { slug: "burglary-theft", label: "Burglary and theft", label_cy: "Byrgleriaeth a lladrad" },
        Category { slug: "criminal-damage", label: "Criminal damage", label_cy: "Difrod troseddol" },
        Category { slug: "road-safety", label: "Road safety", label_cy: "Diogelwch ar y ffyrdd" },
        Category {
            slug: "domestic-abuse-vawg",
            label: "Domestic abuse and violence against women and girls",
            label_cy: "Cam-drin domestig a thrais yn erbyn menywod a merched",
        },
        Category { slug: "hate-crime", label: "Hate crime", label_cy: "Troseddau casineb" },
        Category { slug: "fraud-scams", label: "Fraud and scams", label_cy: "Twyll a sgamiau" },
        Category {
            slug: "rural-wildlife",
            label: "Rural and wildlife crime",
            label_cy: "Troseddau gwledig a bywyd gwyllt",
        },
        Category { slug: "exploitation", label: "Exploitation", label_cy: "Camfanteisio" },
        Category { slug: "feeling-unsafe", label: "Feeling unsafe", label_cy: "Teimlo'n anniogel" },
        Category { slug: "other", label: "Other", label_cy: "Arall" },
    ],
    prompts: Prompts {
        text: Bilingual {
            en: "What are people worried about here? One line is enough.",
            cy: "Beth sy'n poeni pobl yma? Mae un llinell yn ddigon.",
        },
        feeling_safe: Bilingual {
            en: "How safe do people feel here? 1 is very unsafe, 5 is very safe.",
            cy: "Pa mor ddiogel mae pobl yn teimlo yma? Mae 1 yn anniogel iawn, mae 5 yn ddiogel iawn.",
        },
        location: Bilingual {
            en: "Where is this? Use your location, give a postcode or pick the area.",
            cy: "Ble mae hyn? Defnyddiwch eich lleoliad, rhowch god post neu dewiswch yr ardal.",
        },
    },
};

/// The document the bundled campaign is published in: a fixed id, the same on every server, so a phone can ask for
/// it before it knows anything else.
#[must_use]
pub fn campaign_document(slug: &str) -> Option<crate::DocumentId> {
    // "grapevine-campgn" in ASCII: recognisable in a hex dump, and never a random (version 4) insight UUID.
    (slug == DEFAULT_CAMPAIGN_SLUG)
        .then(|| crate::DocumentId::for_insight(uuid::Uuid::from_u128(0x6772_6170_6576_696e_652d_6361_6d70_676e)))
}

/// Looks a campaign up by slug. Only the bundled default exists for now.
#[must_use]
pub fn campaign(slug: &str) -> Option<&'static Campaign> {
    (slug == DEFAULT_CAMPAIGN.slug).then_some(&DEFAULT_CAMPAIGN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_campaign_has_the_fourteen_plan_categories() {
        let slugs: Vec<_> = DEFAULT_CAMPAIGN.categories.iter().map(|c| c.slug).collect();
        assert_eq!(slugs.len(), 14);
        assert!(slugs.contains(&"domestic-abuse-vawg"));
        assert_eq!(DEFAULT_CAMPAIGN.category("road-safety").map(|c| c.label), Some("Road safety"));
        assert!(DEFAULT_CAMPAIGN.category("Road Safety").is_none(), "slugs are exact");
        assert!(campaign("community-safety").is_some());
        assert!(campaign("elsewhere").is_none());
    }
}
