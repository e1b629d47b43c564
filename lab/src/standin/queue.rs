//! The stand-in's build queue: items, causes, coalescing, and `queue.xml` in Jenkins' format.
//!
//! One item per job at most: a new request for a job that already has a queued (not yet started) item
//! is folded into that item, which keeps its id and `inQueueSince` and adds the cause (counted) and the
//! timer fire slot, as Jenkins' `Queue.schedule2` folds a `CauseAction` into the existing item.
//!
//! `queue.xml` follows `Queue.save()`: `<hudson.model.Queue_-State>` with the id `<counter>` and the
//! items, each naming its task by full name. The stand-in adds `<standinFireSlots>` to each item.

use super::xml;

/// Why a build was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    /// A timer trigger fired.
    Timer,
    /// A user asked for it (`POST /job/.../build`); `None` for anonymous.
    User(Option<String>),
}

impl Cause {
    /// The Java class, as `_class` in the JSON API.
    pub fn class(&self) -> &'static str {
        match self {
            Cause::Timer => "hudson.triggers.TimerTrigger$TimerTriggerCause",
            Cause::User(_) => "hudson.model.Cause$UserIdCause",
        }
    }

    /// `getShortDescription()`.
    pub fn short_description(&self) -> String {
        match self {
            Cause::Timer => "Started by timer".to_string(),
            Cause::User(Some(u)) => format!("Started by user {u}"),
            Cause::User(None) => "Started by user anonymous".to_string(),
        }
    }

    /// The XStream form, as in `build.xml` and `queue.xml`.
    pub fn xml(&self) -> String {
        match self {
            Cause::Timer => "<hudson.triggers.TimerTrigger_-TimerTriggerCause/>".to_string(),
            Cause::User(Some(u)) => format!(
                "<hudson.model.Cause_-UserIdCause><userId>{}</userId></hudson.model.Cause_-UserIdCause>",
                xml::escape(u)
            ),
            Cause::User(None) => "<hudson.model.Cause_-UserIdCause/>".to_string(),
        }
    }

    fn from_element(e: &xml::Element) -> Option<Cause> {
        match e.name.as_str() {
            "hudson.triggers.TimerTrigger_-TimerTriggerCause" => Some(Cause::Timer),
            "hudson.model.Cause_-UserIdCause" => Some(Cause::User(
                e.child_text("userId").filter(|s| !s.is_empty()),
            )),
            _ => None,
        }
    }
}

/// One queued item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub id: u64,
    /// Full name of the job, e.g. `F/B`.
    pub job: String,
    /// When the first request came (epoch ms; for a timer, its fire slot).
    pub in_queue_since: u64,
    /// Distinct causes with how many requests each stands for.
    pub causes: Vec<(Cause, u32)>,
    /// The timer fire slots (epoch ms) this item covers, in order.
    pub fire_slots: Vec<u64>,
}

impl Item {
    /// Folds one more request into the item.
    pub fn fold(&mut self, cause: Cause, slot: Option<u64>) {
        match self.causes.iter_mut().find(|(c, _)| *c == cause) {
            Some((_, n)) => *n += 1,
            None => self.causes.push((cause, 1)),
        }
        if let Some(s) = slot {
            self.fold_slot(s);
        }
    }

    /// Adds a fire slot the item covers (once).
    pub fn fold_slot(&mut self, slot: u64) {
        if !self.fire_slots.contains(&slot) {
            self.fire_slots.push(slot);
        }
    }
}

/// The whole `queue.xml`. `job_class` gives the `_class` of a job by full name.
pub fn to_xml(counter: u64, items: &[Item], job_class: impl Fn(&str) -> String) -> String {
    let mut out = format!(
        "<?xml version='1.1' encoding='UTF-8'?>\n<hudson.model.Queue_-State>\n  <counter>{counter}</counter>\n  <items>\n"
    );
    for it in items {
        let causes: String = it
            .causes
            .iter()
            .map(|(c, n)| {
                format!(
                    "              <entry>\n                {}\n                <int>{n}</int>\n              </entry>\n",
                    c.xml()
                )
            })
            .collect();
        let slots: String = it
            .fire_slots
            .iter()
            .map(|s| format!("        <slot>{s}</slot>\n"))
            .collect();
        out.push_str(&format!(
            "    <hudson.model.Queue_-BuildableItem>\n      <actions>\n        <hudson.model.CauseAction>\n          \
             <causeBag class=\"linked-hash-map\">\n{causes}          </causeBag>\n        </hudson.model.CauseAction>\n      \
             </actions>\n      <id>{}</id>\n      <inQueueSince>{}</inQueueSince>\n      <task class=\"{}\">{}</task>\n      \
             <standinFireSlots>\n{slots}      </standinFireSlots>\n    </hudson.model.Queue_-BuildableItem>\n",
            it.id,
            it.in_queue_since,
            xml::escape(&job_class(&it.job)),
            xml::escape(&it.job),
        ));
    }
    out.push_str("  </items>\n</hudson.model.Queue_-State>\n");
    out
}

/// Reads a `queue.xml`: the id counter and the items (items without a task are skipped).
pub fn from_xml(text: &str) -> Result<(u64, Vec<Item>), String> {
    let root = xml::parse(text)?;
    if root.name != "hudson.model.Queue_-State" {
        return Err(format!("unexpected root element <{}>", root.name));
    }
    let counter = root
        .child_text("counter")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut items = Vec::new();
    if let Some(list) = root.child("items") {
        for e in list.children() {
            let Some(job) = e.child_text("task").filter(|s| !s.is_empty()) else {
                continue;
            };
            let Some(id) = e.child_text("id").and_then(|s| s.parse().ok()) else {
                continue;
            };
            let mut causes = Vec::new();
            if let Some(bag) = e.path(&["actions", "hudson.model.CauseAction", "causeBag"]) {
                for entry in bag.children().filter(|x| x.name == "entry") {
                    let cause = entry.children().find_map(Cause::from_element);
                    let n = entry
                        .child_text("int")
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(1);
                    if let Some(c) = cause {
                        causes.push((c, n));
                    }
                }
            }
            let fire_slots = e
                .child("standinFireSlots")
                .map(|s| {
                    s.children()
                        .filter_map(|x| x.text().trim().parse().ok())
                        .collect()
                })
                .unwrap_or_default();
            items.push(Item {
                id,
                job,
                in_queue_since: e
                    .child_text("inQueueSince")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0),
                causes,
                fire_slots,
            });
        }
    }
    Ok((counter, items))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fold_and_round_trip() {
        let mut it = Item {
            id: 3,
            job: "F/B & C".into(),
            in_queue_since: 1000,
            causes: vec![(Cause::Timer, 1)],
            fire_slots: vec![1000],
        };
        it.fold(Cause::Timer, Some(2000));
        it.fold(Cause::Timer, Some(2000));
        it.fold(Cause::User(Some("admin".into())), None);
        assert_eq!(
            it.causes,
            vec![(Cause::Timer, 3), (Cause::User(Some("admin".into())), 1)]
        );
        assert_eq!(it.fire_slots, vec![1000, 2000]);
        let text = to_xml(9, std::slice::from_ref(&it), |_| {
            "hudson.model.FreeStyleProject".into()
        });
        assert!(text.contains("<task class=\"hudson.model.FreeStyleProject\">F/B &amp; C</task>"));
        let (counter, items) = from_xml(&text).unwrap();
        assert_eq!(counter, 9);
        assert_eq!(items, vec![it]);
        assert!(from_xml("<queue/>").is_err());
    }
}
