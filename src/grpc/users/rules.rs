//! Checks of which caller may change which user, and of the fields an UpdateUser request
//! changes. The handlers run these pure checks after the policy table has admitted the call.

use prost_types::FieldMask;

use crate::auth::Role;
use crate::grpc::ApiError;
use crate::grpc::resources::role_from_proto;
use crate::proto::ally::v1 as pb;

/// ErrorInfo reason when a call would act on, or grant, a role above the caller's own.
pub const ROLE_ABOVE_CALLER: &str = "ROLE_ABOVE_CALLER";
/// ErrorInfo reason when a call would leave the tenant without an active owner.
pub const LAST_OWNER: &str = "LAST_OWNER";

/// Checks that a caller with role `caller` may change users other than themselves at all:
/// only admins and owners may.
pub fn check_may_manage_others(caller: Role) -> Result<(), ApiError> {
    if caller < Role::Admin {
        return Err(ApiError::permission_denied(
            "ROLE_NOT_ALLOWED",
            format!("the caller's role {caller} may change only the caller's own account"),
        ));
    }
    Ok(())
}

/// Checks that a caller with role `caller` may change a user whose role is `target`. Only
/// admins and owners change users, and only users whose role is at most their own.
pub fn check_may_manage(caller: Role, target: Role) -> Result<(), ApiError> {
    check_may_manage_others(caller)?;
    if target > caller {
        return Err(ApiError::permission_denied(
            ROLE_ABOVE_CALLER,
            format!("the user's role {target} is above the caller's role {caller}"),
        ));
    }
    Ok(())
}

/// Checks that a caller with role `caller` may give a user the role `granted`.
pub fn check_may_grant(caller: Role, granted: Role) -> Result<(), ApiError> {
    if granted > caller {
        return Err(ApiError::permission_denied(
            ROLE_ABOVE_CALLER,
            format!("the role {granted} is above the caller's role {caller}"),
        ));
    }
    Ok(())
}

/// Reads a `Role` enum field. `ROLE_UNSPECIFIED` becomes `None`.
pub fn parse_role(field: &str, value: i32) -> Result<Option<Role>, ApiError> {
    pb::Role::try_from(value)
        .map(role_from_proto)
        .map_err(|_| ApiError::invalid(field, format!("{value} is not a role")))
}

/// Returns whether a change would take away the tenant's last active owner. `target_role` and
/// `target_active` describe the user before the change, `stays_active_owner` whether the user
/// is still an active owner after it, and `active_owners` counts the tenant's active owners
/// before it.
pub fn removes_last_owner(
    target_role: Role,
    target_active: bool,
    stays_active_owner: bool,
    active_owners: i64,
) -> bool {
    target_role == Role::Owner && target_active && !stays_active_owner && active_owners <= 1
}

/// Builds the error for a change that [`removes_last_owner`].
pub fn last_owner_error() -> ApiError {
    ApiError::failed_precondition(
        LAST_OWNER,
        "the user is the tenant's last active owner; make another user an owner first",
    )
}

/// Fields of the user that an UpdateUser request changes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProfileFields {
    pub display_name: bool,
    pub email: bool,
}

/// Fields UpdateUser may change, as `update_mask` names them.
const UPDATABLE_FIELDS: &[&str] = &["display_name", "email"];

/// Reads an UpdateUser `update_mask`. An unset or empty mask selects each of `display_name`
/// and `email` that is non-empty in `user`, and `*` selects both.
pub fn profile_fields(
    mask: Option<&FieldMask>,
    user: &pb::User,
) -> Result<ProfileFields, ApiError> {
    let paths = mask.map(|mask| mask.paths.as_slice()).unwrap_or_default();
    if paths.is_empty() {
        let fields = ProfileFields {
            display_name: !user.display_name.is_empty(),
            email: !user.email.is_empty(),
        };
        if fields == ProfileFields::default() {
            return Err(ApiError::invalid(
                "update_mask",
                "name the fields to change, or set user.display_name or user.email",
            ));
        }
        return Ok(fields);
    }
    let mut fields = ProfileFields::default();
    for path in paths {
        match path.as_str() {
            "*" => {
                fields.display_name = true;
                fields.email = true;
            }
            "display_name" => fields.display_name = true,
            "email" => fields.email = true,
            other => {
                return Err(ApiError::invalid(
                    "update_mask",
                    format!(
                        "`{other}` cannot be updated; use {} or *",
                        UPDATABLE_FIELDS.join(", ")
                    ),
                ));
            }
        }
    }
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(paths: &[&str]) -> FieldMask {
        FieldMask {
            paths: paths.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn managing_needs_admin_and_rank() {
        assert!(check_may_manage(Role::Owner, Role::Owner).is_ok());
        assert!(check_may_manage(Role::Admin, Role::Admin).is_ok());
        assert!(check_may_manage(Role::Admin, Role::Viewer).is_ok());
        assert!(check_may_manage(Role::Admin, Role::Owner).is_err());
        assert!(check_may_manage(Role::Member, Role::Viewer).is_err());
        assert!(check_may_manage(Role::Viewer, Role::Viewer).is_err());
    }

    #[test]
    fn granting_stops_at_own_role() {
        assert!(check_may_grant(Role::Owner, Role::Owner).is_ok());
        assert!(check_may_grant(Role::Admin, Role::Admin).is_ok());
        assert!(check_may_grant(Role::Admin, Role::Owner).is_err());
        assert!(check_may_grant(Role::Member, Role::Admin).is_err());
    }

    #[test]
    fn role_field_values() {
        assert_eq!(parse_role("role", 0).unwrap(), None);
        assert_eq!(parse_role("role", 4).unwrap(), Some(Role::Owner));
        assert!(parse_role("role", 9).is_err());
    }

    #[test]
    fn last_owner_cases() {
        assert!(removes_last_owner(Role::Owner, true, false, 1));
        assert!(!removes_last_owner(Role::Owner, true, false, 2));
        assert!(!removes_last_owner(Role::Owner, true, true, 1));
        assert!(!removes_last_owner(Role::Owner, false, false, 1));
        assert!(!removes_last_owner(Role::Admin, true, false, 0));
    }

    #[test]
    fn unset_mask_uses_non_empty_fields() {
        let user = pb::User {
            display_name: "Ada".into(),
            ..Default::default()
        };

        let fields = profile_fields(None, &user).unwrap();
        assert!(fields.display_name);
        assert!(!fields.email);
        assert!(profile_fields(Some(&mask(&[])), &pb::User::default()).is_err());
    }

    #[test]
    fn mask_paths() {
        let user = pb::User::default();

        let both = profile_fields(Some(&mask(&["*"])), &user).unwrap();
        assert!(both.display_name);
        assert!(both.email);
        let email = profile_fields(Some(&mask(&["email"])), &user).unwrap();
        assert!(email.email);
        assert!(!email.display_name);
        assert!(profile_fields(Some(&mask(&["role"])), &user).is_err());
    }
}
