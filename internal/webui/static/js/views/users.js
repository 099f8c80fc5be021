// Users and roles (docs/api.md §5, admin): create, change role, deactivate,
// set a password, delete. The hub refuses to lose its last admin.
import { api, get } from '../api.js';
import { t } from '../i18n.js';
import { h, replace, fmtTime, table, field, ask, sure } from '../dom.js';

const ROLES = ['viewer', 'operator', 'admin'];

export async function users(ctx) {
  const msg = h('p', { 'aria-live': 'polite' });
  const say = (text, bad) => { msg.textContent = text; msg.className = bad ? 'error' : 'ok'; };
  const list = h('div');
  const load = async () => {
    const r = await get('/users');
    if (ctx.disposed) return;
    replace(list, table([t('User'), t('Role'), t('Active'), t('Created'), ''], r.users.map((u) => {
      const self = u.id === ctx.user.id;
      const patch = async (body, undo) => {
        try { await api('PATCH', `/users/${u.id}`, body); say(t('Saved.')); } catch (err) { say(err.message, true); undo(); }
      };
      const role = h('select', { 'aria-label': t('Role of {u}', { u: u.username }), onchange: (e) => patch({ role: e.target.value }, () => { e.target.value = u.role; }) },
        ROLES.map((x) => h('option', { value: x, selected: x === u.role }, t(x))));
      const active = h('input', { type: 'checkbox', checked: u.is_active, 'aria-label': t('{u} active', { u: u.username }),
        onchange: (e) => patch({ is_active: e.target.checked }, () => { e.target.checked = u.is_active; }) });
      return h('tr', { dataset: { user: u.username } },
        h('td', null, h('b', null, u.username), h('div', { class: 'small muted' }, [u.full_name, u.email].filter(Boolean).join(' · '))),
        h('td', null, role), h('td', null, active), h('td', { class: 'small' }, fmtTime(u.created_at)),
        h('td', null, h('div', { class: 'row' },
          h('button', { type: 'button', onclick: async () => {
            const pw = await ask(t('Set password'), t('New password for {u} (8–72 characters, upper and lower case and a digit):', { u: u.username }), '', 'password');
            if (!pw) return;
            try { await api('POST', `/users/${u.id}/reset-password`, { new_password: pw }); say(t('Password set.')); } catch (err) { say(err.message, true); }
          } }, t('Set password')),
          self ? null : h('button', { type: 'button', class: 'danger', onclick: async () => {
            if (!(await sure(t('Delete'), t('Delete the user {u}?', { u: u.username }), t('Delete')))) return;
            try { await api('DELETE', `/users/${u.id}`); load(); } catch (err) { say(err.message, true); }
          } }, t('Delete')))));
    })));
  };
  const form = h('form', { class: 'row', id: 'user-form', onsubmit: async (e) => {
    e.preventDefault();
    const f = new FormData(form);
    try {
      await api('POST', '/users', { username: f.get('username'), email: f.get('email'), password: f.get('password'), role: f.get('role'), full_name: f.get('full_name') || undefined });
      form.reset(); say(t('User created.')); load();
    } catch (err) { say(err.message, true); }
  } },
  field(t('Username'), h('input', { name: 'username', required: true, minLength: 3, maxLength: 50 })),
  field(t('E-mail'), h('input', { name: 'email', type: 'email', required: true })),
  field(t('Full name (optional)'), h('input', { name: 'full_name' })),
  field(t('Password'), h('input', { name: 'password', type: 'password', required: true, minLength: 8, autocomplete: 'new-password' })),
  field(t('Role'), h('select', { name: 'role' }, ROLES.map((x) => h('option', { value: x }, t(x))))),
  h('button', { class: 'primary', type: 'submit' }, t('Create user')));
  replace(ctx.main, h('h1', null, t('Users')), list, msg, h('h2', null, t('New user')), form,
    h('p', { class: 'small muted' }, t('viewer: reads everything · operator: also controls devices, rules and the emergency stop · admin: also users, logs and the database.')));
  await load();
}
