//! Campaigns: what a collector may be asked about. The default campaign is bundled so a phone can capture before it has
//! ever reached a server.

/// One category an insight may be filed under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Category {
    /// The stable slug stored in insights, e.g. `road-safety`.
    pub slug: &'static str,
    /// The English label shown on the capture form.
    pub label: &'static str,
}

/// A campaign: a named list of categories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Campaign {
    pub slug: &'static str,
    pub name: &'static str,
    pub categories: &'static [Category],
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
    categories: &[
        Category { slug: "asb", label: "Anti-social behaviour" },
        Category { slug: "drugs", label: "Drugs" },
        Category { slug: "violence-weapons", label: "Violence and weapons" },
        Category { slug: "vehicle-crime", label: "Vehicle crime" },
        Category { slug: "burglary-theft", label: "Burglary and theft" },
        Category { slug: "criminal-damage", label: "Criminal damage" },
        Category { slug: "road-safety", label: "Road safety" },
        Category { slug: "domestic-abuse-vawg", label: "Domestic abuse and violence against women and girls" },
        Category { slug: "hate-crime", label: "Hate crime" },
        Category { slug: "fraud-scams", label: "Fraud and scams" },
        Category { slug: "rural-wildlife", label: "Rural and wildlife crime" },
        Category { slug: "exploitation", label: "Exploitation" },
        Category { slug: "feeling-unsafe", label: "Feeling unsafe" },
        Category { slug: "other", label: "Other" },
    ],
};

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
