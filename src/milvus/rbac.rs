//! Role-based access control calls: what the cutover's `rbac` freeze revokes and restores.

use super::client::MilvusClient;
use super::error::Result;
use crate::proto::milvus as pb;

/// One privilege granted to a role on an object (`Collection` named `object_name`, `*` for
/// all) in a database. Serializable so a cutover can persist what it revoked.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Grant {
    pub role: String,
    pub object: String,
    pub object_name: String,
    pub privilege: String,
    pub db_name: String,
}

impl Grant {
    fn entity(&self) -> pb::GrantEntity {
        pb::GrantEntity {
            role: Some(pb::RoleEntity { name: self.role.clone() }),
            object: Some(pb::ObjectEntity { name: self.object.clone() }),
            object_name: self.object_name.clone(),
            grantor: Some(pb::GrantorEntity {
                user: None,
                privilege: Some(pb::PrivilegeEntity { name: self.privilege.clone() }),
            }),
            db_name: self.db_name.clone(),
        }
    }
}

impl MilvusClient {
    pub async fn create_role(&self, role: &str) -> Result<()> {
        self.call("CreateRole", role, |mut c| async move {
            c.create_role(pb::CreateRoleRequest { base: None, entity: Some(pb::RoleEntity { name: role.to_string() }) })
                .await
        })
        .await?;
        Ok(())
    }

    pub async fn drop_role(&self, role: &str) -> Result<()> {
        self.call("DropRole", role, |mut c| async move {
            c.drop_role(pb::DropRoleRequest { base: None, role_name: role.to_string() }).await
        })
        .await?;
        Ok(())
    }

    /// Every privilege granted to `role` (in this client's database).
    pub async fn grants(&self, role: &str) -> Result<Vec<Grant>> {
        let db = self.database().to_string();
        let r = self
            .call("SelectGrant", role, |mut c| {
                let db = db.clone();
                async move {
                    c.select_grant(pb::SelectGrantRequest {
                        base: None,
                        entity: Some(pb::GrantEntity {
                            role: Some(pb::RoleEntity { name: role.to_string() }),
                            db_name: db,
                            ..Default::default()
                        }),
                    })
                    .await
                }
            })
            .await?;
        Ok(r.entities
            .into_iter()
            .map(|e| Grant {
                role: e.role.map(|r| r.name).unwrap_or_default(),
                object: e.object.map(|o| o.name).unwrap_or_default(),
                object_name: e.object_name,
                privilege: e.grantor.and_then(|g| g.privilege).map(|p| p.name).unwrap_or_default(),
                db_name: e.db_name,
            })
            .collect())
    }

    pub async fn grant(&self, g: &Grant) -> Result<()> {
        self.operate_privilege(g, pb::OperatePrivilegeType::Grant).await
    }

    pub async fn revoke(&self, g: &Grant) -> Result<()> {
        self.operate_privilege(g, pb::OperatePrivilegeType::Revoke).await
    }

    async fn operate_privilege(&self, g: &Grant, kind: pb::OperatePrivilegeType) -> Result<()> {
        let what = format!("{} {} on {}", g.role, g.privilege, g.object_name);
        self.call("OperatePrivilege", &what, |mut c| async move {
            c.operate_privilege(pb::OperatePrivilegeRequest { base: None, entity: Some(g.entity()), r#type: kind as i32 })
                .await
        })
        .await?;
        Ok(())
    }
}
